"""Experiment 5 (METHOD.md §5.5): weight grafting — is "how to use a fact" a portable weight change?

On the dax / wug / zong dataset's 20 held-out names, four trainings from the pretrained theta:

- ``F``: finetune on the facts F (dax);
- ``F,I(F)``: starting from theta + Delta_F, finetune on the implications I(F) (zong). Its delta,
  Delta_{F,I(F)} = (theta + Delta_F + Delta_{F,I(F)}) - (theta + Delta_F), is the **graft**;
- ``F'``: finetune on counterfactual facts F' (every name gets a different city);
- ``I(F)``: finetune on I(F) directly from theta: the **control** delta Delta_{I(F)}.

Then evaluate theta + Delta_{F'} alone, with the graft added, and with the control added, on the
counterfactual implications I(F'), the original implications I(F), the counterfactual facts F', the
original facts F and the deranged-pairing control of I(F'). If the graft carries "use the dax fact
to answer zong" rather than the specific answers, theta + Delta_{F'} + graft answers I(F') well.

>>> from extractive_lens import tiny_model, daxwug
>>> from extractive_lens.experiments.grafting import weight_grafting
>>> result = weight_grafting(tiny_model(), daxwug(), lr=3e-3, epochs=1, progress=False)
>>> [row["weights"] for row in result.table()][2:]
['+ Delta_{F,I(F)} (graft)', '+ Delta_{I(F)} (control)']
"""

from __future__ import annotations

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

CF_FACTS = "counterfactual_facts"
CF_IMPLICATIONS = "counterfactual_implications"
CF_CONTROL = "counterfactual_control"

#: Evaluated splits: key -> column label.
COLUMNS = {
    CF_IMPLICATIONS: "I(F')",
    IMPLICATIONS: "I(F)",
    CF_FACTS: "F'",
    FACTS: "F",
    CF_CONTROL: "control I(F')",
}

#: Rows: key -> (label, the trainings whose deltas are applied, in order).
ROWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "theta": ("theta", ()),
    "counterfactual": ("theta + Delta_F'", ("F'",)),
    "graft": ("+ Delta_{F,I(F)} (graft)", ("F'", "F,I(F)")),
    "control": ("+ Delta_{I(F)} (control)", ("F'", "I(F)")),
}

#: The paper's OLMo-7B table (METHOD.md §5.5): row -> column -> mean rank.
PAPER: dict[str, dict[str, float]] = {
    "counterfactual": {CF_IMPLICATIONS: 9.12, IMPLICATIONS: 8.55, CF_FACTS: 0.00},
    "graft": {CF_IMPLICATIONS: 1.13, IMPLICATIONS: 3.31, CF_FACTS: 0.08},
    "control": {CF_IMPLICATIONS: 8.42, IMPLICATIONS: 0.43, CF_FACTS: 0.32},
}

#: The trainings: name -> (training split, the training it starts from or None for theta).
TRAININGS: dict[str, tuple[str, str | None]] = {
    "F": (FACTS, None),
    "F,I(F)": (IMPLICATIONS, "F"),
    "F'": (CF_FACTS, None),
    "I(F)": (IMPLICATIONS, None),
}


@dataclass(frozen=True)
class GraftResult:
    """What ``weight_grafting`` measured.

    Attributes:
        model: the model's identity.
        config: lr, epochs, batch size, seed, dataset seed.
        dataset: the dataset's name.
        ranks: row (``theta``, ``counterfactual``, ``graft``, ``control``) -> split (keys of
            ``COLUMNS``) -> per-item ranks.
        n_options: split -> number of options.
        histories: training (``F``, ``F,I(F)``, ``F'``, ``I(F)``) -> per-epoch rows (epoch, loss,
            mean rank of the training split).
        seconds: wall time of the whole experiment.
        deltas: training -> its delta; ``deltas["F,I(F)"]`` is the graft (not saved by default).
    """

    model: dict[str, Any]
    config: dict[str, Any]
    dataset: str
    ranks: dict[str, dict[str, list[int]]]
    n_options: dict[str, int]
    histories: dict[str, list[dict[str, float]]]
    seconds: float = 0.0
    deltas: dict[str, WeightDelta] = field(default_factory=dict, repr=False)

    @property
    def graft(self) -> WeightDelta:
        """Delta_{F,I(F)}: the implications' training on top of the facts model."""
        return self.deltas["F,I(F)"]

    def mean_ranks(self) -> dict[str, dict[str, float]]:
        """row -> split -> mean rank."""
        return {row: {s: mean(r) for s, r in sp.items()} for row, sp in self.ranks.items()}

    def table(self) -> list[dict[str, Any]]:
        """The METHOD.md §5.5 table: ours (all columns) beside the paper's (I(F'), I(F), F')."""
        means = self.mean_ranks()
        rows = []
        for key, (label, _) in ROWS.items():
            row: dict[str, Any] = {"weights": label}
            row.update({COLUMNS[s]: means[key].get(s) for s in COLUMNS})
            row.update({f"paper {COLUMNS[s]}": PAPER.get(key, {}).get(s) for s in PAPER["graft"]})
            rows.append(row)
        return rows

    def training_checks(self) -> dict[str, float]:
        """Each training's final mean rank on its own training split (did it learn?)."""
        return {
            name: self.histories[name][-1].get(split, float("nan"))
            for name, (split, _) in TRAININGS.items()
        }

    def graft_effect(self) -> tuple[float, float]:
        """Control rank minus I(F') rank under the graft, paired by item, and its std. error."""
        ranks = self.ranks["graft"]
        return paired_effect(ranks[CF_IMPLICATIONS], ranks[CF_CONTROL])

    def summary(self) -> dict[str, float]:
        """Flat metrics ``<row>/<split>`` (mean rank), ``train/<training>`` and ``graft_effect``."""
        out = {f"{row}/{s}": v for row, sp in self.mean_ranks().items() for s, v in sp.items()}
        out.update({f"train/{k}": v for k, v in self.training_checks().items()})
        out["graft_effect"] = self.graft_effect()[0]
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
            title=f"Weight grafting on {self.model['name']}",
        )

    def to_dict(self) -> dict[str, Any]:
        effect, se = self.graft_effect()
        return {
            **base_dict("grafting", self),
            "dataset": self.dataset,
            "table": self.table(),
            "summary": self.summary(),
            "ranks": self.ranks,
            "n_options": self.n_options,
            "histories": self.histories,
            "training_checks": self.training_checks(),
            "graft_effect": {
                "control_minus_counterfactual_implication": effect,
                "standard_error": se,
            },
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
    eval_batch_size: int = 32,
    progress: bool = True,
) -> GraftResult:
    """Train the four deltas and evaluate the graft (see the module doc).

    Args:
        model: the model; its weights are unchanged afterwards.
        dataset: needs ``facts``, ``implications``, ``counterfactual_facts`` and
            ``counterfactual_implications`` aligned by item (default: ``daxwug(data_seed)``).
        lr, epochs, batch_size, seed: the recipe of every training.
    """
    start = time.perf_counter()
    ds = resolve_dataset(dataset if dataset is not None else daxwug(data_seed), data_seed)
    require_splits(ds, (FACTS, IMPLICATIONS, CF_FACTS, CF_IMPLICATIONS), "weight_grafting")
    cf = ds.split(CF_IMPLICATIONS)
    same = [
        i
        for i, (a, b) in enumerate(zip(ds.implications, cf.examples, strict=False))
        if a.answer == b.answer
    ]
    if len(cf.examples) != len(ds.implications) or len(same) == len(cf.examples):
        raise ValueError(
            "weight_grafting: counterfactual_implications must pair item by item with "
            "implications and change (some of) their answers"
        )
    ds = _with_counterfactual_control(ds)
    deltas: dict[str, WeightDelta] = {}
    histories: dict[str, list[dict[str, float]]] = {}
    for name, (split, base) in TRAININGS.items():
        examples, options = ds.split(split).examples, ds.options_for(split)
        run = finetune(
            model,
            examples,
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            eval_sets={split: (examples, options)},
            eval_batch_size=eval_batch_size,
            base=None if base is None else deltas[base],
            progress=progress,
        )
        deltas[name] = run.delta
        histories[name] = [{k.removeprefix("rank/"): v for k, v in r.items()} for r in run.history]
    ranks = {
        key: split_ranks(
            model, ds, COLUMNS, delta=[deltas[t] for t in applied], batch_size=eval_batch_size
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
    }
    return GraftResult(
        model=model_identity(model),
        config=config,
        dataset=ds.name,
        ranks=ranks,
        n_options={s: len(ds.options_for(s)) for s in COLUMNS},
        histories=histories,
        seconds=time.perf_counter() - start,
        deltas=deltas,
    )


def _with_counterfactual_control(ds: OCRDataset) -> OCRDataset:
    """``ds`` plus the deranged-pairing control of the counterfactual implications."""
    import dataclasses

    if CF_CONTROL in ds.splits():
        return ds
    cf = ds.split(CF_IMPLICATIONS)
    control = Split(
        CF_CONTROL,
        deranged_control(cf.examples),
        cf.options,
        "counterfactual implications with deranged answers",
    )
    return dataclasses.replace(ds, extra=(*ds.extra, control))
