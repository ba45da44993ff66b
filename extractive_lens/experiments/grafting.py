"""Experiment 5 (method §5.5, §7): weight grafting — is "how to use a fact" a portable change?

:func:`weight_grafting` is the paper's experiment as the authors' ``gradient_grafting.py`` runs it,
on the 84 **training** names of the dax / wug / zong data (``daxwug(prompts="paper")``, about four
names per city). Four trainings, each from theta unless said otherwise:

- ``F``: the dax facts of dataset 1 (``train_facts``);
- ``F,I(F)``: starting from theta + Delta_F, the zong implications of dataset 1
  (``train_implications``). Its delta Delta_{F,I(F)} is the **graft**;
- ``F'``: the dax facts of dataset 2 (``train_facts_2``: an independent redraw of the same names'
  cities);
- ``I(F)``: the zong implications of dataset 1 directly: the **control** delta Delta_{I(F)}.

Then theta + Delta_{F'} alone, with the graft added, and with the control added, are evaluated on
I(F') (dataset 2's zong, the headline), I(F), F', F and the never-trained ``wug`` relation
(city -> animal). If the graft carries "use the dax fact to answer zong" rather than the specific
answers, theta + Delta_{F'} + graft answers I(F') well and better than the control does.
:meth:`GraftResult.graft_effect` measures exactly that, paired by item, on the items whose I(F')
answer differs from I(F) (where memorising I(F) cannot help).

:func:`weight_grafting_heldout_variant` is this library's earlier design, kept under a name that
says what it is: the 20 **held-out** names (one per city), F' a derangement of F, plus the
deranged-pairing control of I(F'). With one name per city, memorising name -> animal is as cheap
as composing through the city, so it is not the paper's test.

>>> from extractive_lens import tiny_model
>>> from extractive_lens.experiments.grafting import weight_grafting
>>> result = weight_grafting(tiny_model(), lr=3e-3, epochs=1, n_train=8, progress=False)
>>> [row["weights"] for row in result.table()][2:]
['+ Delta_{F,I(F)} (graft)', '+ Delta_{I(F)} (control)']
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import FACTS, IMPLICATIONS, OCRDataset, Split, daxwug, deranged_control
from extractive_lens.delta import WeightDelta
from extractive_lens.experiments.common import (
    base_dict,
    chance,
    head,
    mean,
    paired_effect,
    require_splits,
    resolve_dataset,
    save_result,
    split_ranks,
)
from extractive_lens.experiments.figures import grouped_bars_figure
from extractive_lens.models import model_identity
from extractive_lens.training import finetune

# Logical roles of the evaluated splits (keys of ``GraftResult.ranks[row]``).
CF_FACTS = "counterfactual_facts"
CF_IMPLICATIONS = "counterfactual_implications"
CF_CONTROL = "counterfactual_control"
WUG = "wug"

#: Column labels of the logical roles.
COLUMNS = {
    CF_IMPLICATIONS: "I(F')",
    IMPLICATIONS: "I(F)",
    CF_FACTS: "F'",
    FACTS: "F",
    WUG: "wug",
    CF_CONTROL: "control I(F')",
}

#: Rows: key -> (label, the trainings whose deltas are applied, in order).
ROWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "theta": ("theta", ()),
    "counterfactual": ("theta + Delta_F'", ("F'",)),
    "graft": ("+ Delta_{F,I(F)} (graft)", ("F'", "F,I(F)")),
    "control": ("+ Delta_{I(F)} (control)", ("F'", "I(F)")),
}

#: The paper's OLMo-7B table (docs/method.md §5.5): row -> column -> mean rank.
PAPER: dict[str, dict[str, float]] = {
    "counterfactual": {CF_IMPLICATIONS: 9.12, IMPLICATIONS: 8.55, CF_FACTS: 0.00},
    "graft": {CF_IMPLICATIONS: 1.13, IMPLICATIONS: 3.31, CF_FACTS: 0.08},
    "control": {CF_IMPLICATIONS: 8.42, IMPLICATIONS: 0.43, CF_FACTS: 0.32},
}

#: The trainings: name -> (logical role of its training split, the training it starts from).
TRAININGS: dict[str, tuple[str, str | None]] = {
    "F": (FACTS, None),
    "F,I(F)": (IMPLICATIONS, "F"),
    "F'": (CF_FACTS, None),
    "I(F)": (IMPLICATIONS, None),
}


@dataclass(frozen=True)
class GraftDesign:
    """Which dataset split plays each logical role.

    Attributes:
        name: ``"paper"`` or ``"heldout_variant"``.
        splits: logical role (keys of :data:`COLUMNS`) -> split name in the dataset.
    """

    name: str
    splits: dict[str, str]


PAPER_DESIGN = GraftDesign(
    "paper",
    {
        FACTS: "train_facts",
        IMPLICATIONS: "train_implications",
        CF_FACTS: "train_facts_2",
        CF_IMPLICATIONS: "train_implications_2",
        WUG: "wug",
    },
)
HELDOUT_VARIANT = GraftDesign(
    "heldout_variant",
    {
        FACTS: FACTS,
        IMPLICATIONS: IMPLICATIONS,
        CF_FACTS: CF_FACTS,
        CF_IMPLICATIONS: CF_IMPLICATIONS,
        CF_CONTROL: CF_CONTROL,
    },
)
DESIGNS = {d.name: d for d in (PAPER_DESIGN, HELDOUT_VARIANT)}


@dataclass(frozen=True)
class GraftResult:
    """What ``weight_grafting`` (or its held-out variant) measured.

    Attributes:
        model: the model's identity.
        config: lr, epochs, batch size, seed, dataset seed, ``design`` and the split each
            logical role was read from (``splits``).
        dataset: the dataset's name.
        ranks: row (``theta``, ``counterfactual``, ``graft``, ``control``) -> logical role (keys
            of ``COLUMNS`` present in the design) -> per-item ranks.
        n_options: logical role -> number of options.
        histories: training (``F``, ``F,I(F)``, ``F'``, ``I(F)``) -> per-epoch rows (epoch, loss,
            mean rank of the training split).
        changed: indices of the items whose I(F') answer differs from their I(F) answer.
        seconds: wall time of the whole experiment.
        deltas: training -> its delta; ``deltas["F,I(F)"]`` is the graft (not saved by default).
    """

    model: dict[str, Any]
    config: dict[str, Any]
    dataset: str
    ranks: dict[str, dict[str, list[int]]]
    n_options: dict[str, int]
    histories: dict[str, list[dict[str, float]]]
    changed: tuple[int, ...] = ()
    seconds: float = 0.0
    deltas: dict[str, WeightDelta] = field(default_factory=dict, repr=False)

    @property
    def graft(self) -> WeightDelta:
        """Delta_{F,I(F)}: the implications' training on top of the facts model."""
        return self.deltas["F,I(F)"]

    def mean_ranks(self) -> dict[str, dict[str, float]]:
        """row -> logical role -> mean rank."""
        return {row: {s: mean(r) for s, r in sp.items()} for row, sp in self.ranks.items()}

    def columns(self) -> list[str]:
        """The logical roles evaluated, in table order."""
        return [c for c in COLUMNS if c in self.ranks["theta"]]

    def table(self) -> list[dict[str, Any]]:
        """The method §5.5 table: ours (all columns) beside the paper's (I(F'), I(F), F')."""
        means = self.mean_ranks()
        rows = []
        for key, (label, _) in ROWS.items():
            row: dict[str, Any] = {"weights": label}
            row.update({COLUMNS[s]: means[key].get(s) for s in self.columns()})
            row.update({f"paper {COLUMNS[s]}": PAPER.get(key, {}).get(s) for s in PAPER["graft"]})
            rows.append(row)
        return rows

    def training_checks(self) -> dict[str, float]:
        """Each training's final mean rank on its own training split (did it learn?)."""
        return {
            name: self.histories[name][-1].get(role, float("nan"))
            for name, (role, _) in TRAININGS.items()
        }

    def graft_effect(self) -> tuple[float, float]:
        """Control minus graft rank on I(F'), paired by item over the items whose I(F') answer
        differs from I(F) (positive: the graft answers the new facts' implications better than
        the control delta trained on I(F)), and its standard error."""
        g, c = self.ranks["graft"][CF_IMPLICATIONS], self.ranks["control"][CF_IMPLICATIONS]
        return paired_effect([g[i] for i in self.changed], [c[i] for i in self.changed])

    def follows_new_facts(self) -> tuple[float, float]:
        """Under the graft, I(F) minus I(F') rank on the changed items (positive: the grafted
        model answers from the facts it now holds, F', rather than the trained answers I(F))."""
        r = self.ranks["graft"]
        return paired_effect(
            [r[CF_IMPLICATIONS][i] for i in self.changed],
            [r[IMPLICATIONS][i] for i in self.changed],
        )

    def summary(self) -> dict[str, float]:
        """Flat metrics ``<row>/<role>`` (mean rank), ``train/<training>``, ``graft_effect``
        (and ``_se``), ``follows_new_facts`` (and ``_se``)."""
        out = {f"{row}/{s}": v for row, sp in self.mean_ranks().items() for s, v in sp.items()}
        out.update({f"train/{k}": v for k, v in self.training_checks().items()})
        out["graft_effect"], out["graft_effect_se"] = self.graft_effect()
        out["follows_new_facts"], out["follows_new_facts_se"] = self.follows_new_facts()
        return out

    def figure(self) -> go.Figure:
        """Grouped bars: mean rank per weight setting and split, ours beside the paper's."""
        keys = [k for k in ROWS if k != "theta"]
        means = self.mean_ranks()
        series: dict[str, list[float | None]] = {}
        for s in (CF_IMPLICATIONS, IMPLICATIONS, CF_FACTS):
            series[COLUMNS[s]] = [means[k].get(s) for k in keys]
            series[f"paper {COLUMNS[s]}"] = [PAPER[k].get(s) for k in keys]
        return grouped_bars_figure(
            [ROWS[k][0] for k in keys],
            series,
            hline=chance(self.n_options[CF_IMPLICATIONS]),
            title=f"Weight grafting ({self.config['design']}) on {self.model['name']}",
        )

    def to_dict(self) -> dict[str, Any]:
        effect, se = self.graft_effect()
        follows, follows_se = self.follows_new_facts()
        return {
            **base_dict("grafting", self),
            "dataset": self.dataset,
            "table": self.table(),
            "summary": self.summary(),
            "ranks": self.ranks,
            "n_options": self.n_options,
            "histories": self.histories,
            "changed": list(self.changed),
            "training_checks": self.training_checks(),
            "graft_effect": {
                "control_minus_graft_on_counterfactual_implications": effect,
                "standard_error": se,
                "items": len(self.changed),
            },
            "follows_new_facts": {"implications_minus_counterfactual": follows, "se": follows_se},
            "paper": PAPER,
        }

    def save(self, out_dir: str | Path, overwrite: bool = False, save_deltas: bool = False) -> Path:
        """Write ``results.json`` and ``figure.html`` (and, with ``save_deltas``, the deltas)."""
        return save_result(
            self, out_dir, overwrite=overwrite, deltas=self.deltas if save_deltas else None
        )


def weight_grafting(
    model: TransformerBridge,
    dataset: OCRDataset | str | None = None,
    *,
    lr: float = 1e-4,
    epochs: int = 8,
    batch_size: int = 8,
    seed: int = 0,
    data_seed: int = 0,
    n_train: int | None = None,
    eval_batch_size: int = 32,
    progress: bool = True,
) -> GraftResult:
    """The paper's weight grafting on the training names (module doc).

    Args:
        model: the model; its weights are unchanged afterwards.
        dataset: needs ``train_facts``, ``train_implications``, ``train_facts_2``,
            ``train_implications_2`` (aligned by item) and ``wug`` (default:
            ``daxwug(data_seed, prompts="paper")``).
        lr, epochs, batch_size, seed: the recipe of every training (the paper: Adam, 8 epochs,
            batch 8).
        n_train: use only the first ``n_train`` training names (quick runs; default all 84).
    """
    ds = resolve_dataset(
        dataset if dataset is not None else daxwug(data_seed, prompts="paper"),
        data_seed,
        model.tokenizer,
    )
    if n_train is not None:
        ds = head(ds, len(ds.facts), n_train)
    return _run(model, ds, PAPER_DESIGN, lr, epochs, batch_size, seed, eval_batch_size, progress)


def weight_grafting_heldout_variant(
    model: TransformerBridge,
    dataset: OCRDataset | str | None = None,
    *,
    lr: float = 1e-4,
    epochs: int = 8,
    batch_size: int = 8,
    seed: int = 0,
    data_seed: int = 0,
    eval_batch_size: int = 32,
    progress: bool = True,
) -> GraftResult:
    """Not the paper's design: grafting on the 20 held-out names with F' a derangement of F
    (module doc). Arguments as :func:`weight_grafting`; the dataset needs ``facts``,
    ``implications``, ``counterfactual_facts`` and ``counterfactual_implications``."""
    ds = resolve_dataset(
        dataset if dataset is not None else daxwug(data_seed), data_seed, model.tokenizer
    )
    needed = [n for r, n in HELDOUT_VARIANT.splits.items() if r != CF_CONTROL]
    require_splits(ds, needed, "weight_grafting_heldout_variant")
    ds = _with_counterfactual_control(ds)
    return _run(model, ds, HELDOUT_VARIANT, lr, epochs, batch_size, seed, eval_batch_size, progress)


def _run(
    model: TransformerBridge,
    ds: OCRDataset,
    design: GraftDesign,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    eval_batch_size: int,
    progress: bool,
) -> GraftResult:
    start = time.perf_counter()
    require_splits(ds, tuple(design.splits.values()), f"weight grafting ({design.name})")
    view = _logical_view(ds, design)
    impl, cf = view.split(IMPLICATIONS).examples, view.split(CF_IMPLICATIONS).examples
    if len(cf) != len(impl) or len(view.split(CF_FACTS).examples) != len(impl):
        raise ValueError(
            f"weight grafting: {design.splits[CF_IMPLICATIONS]} and {design.splits[CF_FACTS]} "
            f"must pair item by item with {design.splits[IMPLICATIONS]}"
        )
    changed = tuple(
        i for i, (a, b) in enumerate(zip(impl, cf, strict=True)) if a.answer != b.answer
    )
    if not changed:
        raise ValueError("weight grafting: the counterfactual draw changes no answer")
    deltas: dict[str, WeightDelta] = {}
    histories: dict[str, list[dict[str, float]]] = {}
    for name, (role, base) in TRAININGS.items():
        examples, options = view.split(role).examples, view.options_for(role)
        run = finetune(
            model,
            examples,
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            eval_sets={role: (examples, options)},
            eval_batch_size=eval_batch_size,
            base=None if base is None else deltas[base],
            progress=progress,
        )
        deltas[name] = run.delta
        histories[name] = [{k.removeprefix("rank/"): v for k, v in r.items()} for r in run.history]
    roles = list(design.splits)
    ranks = {
        key: split_ranks(
            model, view, roles, delta=[deltas[t] for t in applied], batch_size=eval_batch_size
        )
        for key, (_, applied) in ROWS.items()
    }
    config = {
        "lr": lr,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "data_seed": ds.seed,
        "trainable": "block linear weights",
        "design": design.name,
        "splits": dict(design.splits),
        "n_items": len(impl),
    }
    return GraftResult(
        model=model_identity(model),
        config=config,
        dataset=ds.name,
        ranks=ranks,
        n_options={s: len(view.options_for(s)) for s in roles},
        histories=histories,
        changed=changed,
        seconds=time.perf_counter() - start,
        deltas=deltas,
    )


def _logical_view(ds: OCRDataset, design: GraftDesign) -> OCRDataset:
    """A dataset whose splits are named by logical role (``facts``, ``counterfactual_facts``,
    ...), each holding the design's split of ``ds``."""
    rec = {role: ds.split(name) for role, name in design.splits.items()}
    extra = tuple(
        Split(role, r.examples, r.options, r.description)
        for role, r in rec.items()
        if role not in (FACTS, IMPLICATIONS)
    )
    return OCRDataset(
        name=ds.name,
        facts=rec[FACTS].examples,
        implications=rec[IMPLICATIONS].examples,
        fact_options=rec[FACTS].options,
        implication_options=rec[IMPLICATIONS].options,
        seed=ds.seed,
        extra=extra,
    )


def _with_counterfactual_control(ds: OCRDataset) -> OCRDataset:
    """``ds`` plus the deranged-pairing control of the counterfactual implications."""
    if CF_CONTROL in ds.splits():
        return ds
    require_splits(ds, (CF_IMPLICATIONS,), "weight_grafting_heldout_variant")
    cf = ds.split(CF_IMPLICATIONS)
    control = Split(
        CF_CONTROL,
        deranged_control(cf.examples),
        cf.options,
        "counterfactual implications with deranged answers",
    )
    return dataclasses.replace(ds, extra=(*ds.extra, control))
