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

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import IMPLICATIONS, OCRDataset
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
from extractive_lens.experiments.grafting_design import (
    CF_CONTROL,
    CF_FACTS,
    CF_IMPLICATIONS,
    COLUMNS,
    DESIGNS,
    HELDOUT_VARIANT,
    PAPER,
    PAPER_DESIGN,
    ROWS,
    TRAININGS,
    WUG,
    GraftDesign,
    changed_items,
    logical_view,
    with_counterfactual_control,
)
from extractive_lens.experiments.protocol import ResultMixin
from extractive_lens.experiments.settings import GraftingConfig, GraftingVariantConfig
from extractive_lens.models import model_identity
from extractive_lens.training import finetune

if TYPE_CHECKING:
    import plotly.graph_objects as go


@dataclass(frozen=True)
class GraftResult(ResultMixin):
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
        from extractive_lens.experiments.figures import grouped_bars_figure

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
    config: GraftingConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> GraftResult:
    """The paper's weight grafting on the training names (module doc).

    Args:
        model: the model; its weights are unchanged afterwards.
        dataset: needs ``train_facts``, ``train_implications``, ``train_facts_2``,
            ``train_implications_2`` (aligned by item) and ``wug`` (default:
            ``config.dataset``, ``daxwug(data_seed, prompts="paper")``).
        config: the settings (:class:`GraftingConfig`); keywords override single fields.
            ``lr``, ``epochs``, ``batch_size``, ``seed``: the recipe of every training (the
            paper: Adam, 8 epochs, batch 8); ``n_train``: use only the first ``n_train``
            training names (quick runs; default all 84).
    """
    c = GraftingConfig.build(config, overrides, "weight_grafting")
    ds = resolve_dataset(c.dataset if dataset is None else dataset, c.data_seed, model.tokenizer)
    if c.n_train is not None:
        ds = head(ds, len(ds.facts), c.n_train)
    return _run(model, ds, PAPER_DESIGN, c, progress)


def weight_grafting_heldout_variant(
    model: TransformerBridge,
    dataset: OCRDataset | str | None = None,
    *,
    config: GraftingVariantConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> GraftResult:
    """Not the paper's design: grafting on the 20 held-out names with F' a derangement of F
    (module doc). Settings as :func:`weight_grafting` (:class:`GraftingVariantConfig`, default
    dataset ``daxwug(data_seed)``); the dataset needs ``facts``, ``implications``,
    ``counterfactual_facts`` and ``counterfactual_implications``."""
    c = GraftingVariantConfig.build(config, overrides, "weight_grafting_heldout_variant")
    ds = resolve_dataset(c.dataset if dataset is None else dataset, c.data_seed, model.tokenizer)
    needed = [n for r, n in HELDOUT_VARIANT.splits.items() if r != CF_CONTROL]
    require_splits(ds, needed, "weight_grafting_heldout_variant")
    ds = with_counterfactual_control(ds)
    return _run(model, ds, HELDOUT_VARIANT, c, progress)


def _run(
    model: TransformerBridge,
    ds: OCRDataset,
    design: GraftDesign,
    c: GraftingConfig | GraftingVariantConfig,
    progress: bool,
) -> GraftResult:
    """The four trainings, then every row's weights evaluated on every role's split."""
    start = time.perf_counter()
    require_splits(ds, tuple(design.splits.values()), f"weight grafting ({design.name})")
    view = logical_view(ds, design)
    changed = changed_items(view, design)
    deltas, histories = _train(model, view, c, progress)
    roles = list(design.splits)
    ranks = {
        key: split_ranks(
            model, view, roles, delta=[deltas[t] for t in applied], batch_size=c.eval_batch_size
        )
        for key, (_, applied) in ROWS.items()
    }
    config = {
        **c.training(),
        "data_seed": ds.seed,
        "trainable": "block linear weights",
        "design": design.name,
        "splits": dict(design.splits),
        "n_items": len(view.implications),
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


def _train(
    model: TransformerBridge, view: OCRDataset, c: GraftingConfig, progress: bool
) -> tuple[dict[str, WeightDelta], dict[str, list[dict[str, float]]]]:
    """The trainings ``F``, ``F,I(F)`` (from theta + Delta_F), ``F'`` and ``I(F)``: their deltas
    and histories (mean rank of the training split after every epoch)."""
    deltas: dict[str, WeightDelta] = {}
    histories: dict[str, list[dict[str, float]]] = {}
    for name, (role, base) in TRAININGS.items():
        examples, options = view.split(role).examples, view.options_for(role)
        run = finetune(
            model,
            examples,
            eval_sets={role: (examples, options)},
            base=None if base is None else deltas[base],
            progress=progress,
            **c.recipe(),
        )
        deltas[name] = run.delta
        histories[name] = [{k.removeprefix("rank/"): v for k, v in r.items()} for r in run.history]
    return deltas, histories


__all__ = [
    "CF_CONTROL",
    "CF_FACTS",
    "CF_IMPLICATIONS",
    "COLUMNS",
    "DESIGNS",
    "HELDOUT_VARIANT",
    "PAPER",
    "PAPER_DESIGN",
    "ROWS",
    "TRAININGS",
    "WUG",
    "GraftDesign",
    "GraftResult",
    "weight_grafting",
    "weight_grafting_heldout_variant",
]
