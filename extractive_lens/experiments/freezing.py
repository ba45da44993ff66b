"""Experiment 3 (docs/method.md §5.3): layer freezing — where must the weight change happen for OCR?

Split the layers into *early* (the first ``early_fraction``, default 75 %) and *late* (the rest).
For each dataset (first-hop and second-hop by default):

- **none**: finetune all block linear weights (the plain OCR run);
- **early / late (reverted)**: the same finetuned delta, with the early (late) layers' part
  reverted after training, i.e. only the other layers keep their change;
- **all (reverted)**: every layer reverted: exactly the untrained model;
- **early / late (frozen)**: retrain with the early (late) layers excluded from training.

Each row reports the mean rank of the facts, their implications and the deranged-pairing control
(docs/method.md §6), next to the paper's OLMo-7B numbers.

>>> from extractive_lens import tiny_model, first_hop
>>> from extractive_lens.experiments.freezing import layer_freezing
>>> result = layer_freezing(tiny_model(n_layers=2), [first_hop()], lr=3e-3, epochs=1,
...                         progress=False)
>>> [row["setting"] for row in result.table()][:2]
['none', 'early (reverted)']
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import CONTROL, FACTS, IMPLICATIONS, OCRDataset
from extractive_lens.delta import WeightDelta
from extractive_lens.experiments.common import (
    base_dict,
    chance,
    early_late_layers,
    mean,
    paired_effect,
    resolve_dataset,
    save_result,
    split_ranks,
)
from extractive_lens.experiments.protocol import ResultMixin
from extractive_lens.experiments.settings import FreezingConfig
from extractive_lens.models import model_identity
from extractive_lens.training import finetune

if TYPE_CHECKING:
    import plotly.graph_objects as go

#: The six settings of docs/method.md §5.3, in table order, with their labels.
MODES: dict[str, str] = {
    "none": "none",
    "early_reverted": "early (reverted)",
    "late_reverted": "late (reverted)",
    "all_reverted": "all (reverted)",
    "early_frozen": "early (frozen)",
    "late_frozen": "late (frozen)",
}

#: The paper's OLMo-7B numbers (method §5.3): mode -> dataset -> (fact rank, implication rank).
PAPER: dict[str, dict[str, tuple[float, float]]] = {
    "none": {"first_hop": (0.00, 0.00), "second_hop": (0.00, 1.80)},
    "early_reverted": {"first_hop": (5.10, 8.40), "second_hop": (0.95, 1.85)},
    "late_reverted": {"first_hop": (0.00, 0.00), "second_hop": (0.10, 6.30)},
    "all_reverted": {"first_hop": (9.20, 9.25), "second_hop": (9.10, 9.50)},
    "early_frozen": {"first_hop": (0.00, 6.50), "second_hop": (0.00, 0.50)},
    "late_frozen": {"first_hop": (0.00, 0.10), "second_hop": (0.00, 6.60)},
}

#: The three trainings behind the six rows.
TRAININGS = ("full", "early_frozen", "late_frozen")


@dataclass(frozen=True)
class FreezingResult(ResultMixin):
    """What ``layer_freezing`` measured.

    Attributes:
        model: the model's identity (``model_identity``).
        config: lr, epochs, batch size, seed, early fraction, the early and late layers, ...
        datasets: the datasets' names, in order.
        ranks: dataset -> mode (a key of ``MODES``) -> split (``facts``, ``implications``,
            ``control_implications``) -> per-item ranks.
        n_options: dataset -> split -> number of options (chance is ``(n - 1) / 2``).
        histories: dataset -> training (``full``, ``early_frozen``, ``late_frozen``) -> the
            per-epoch rows of ``finetune`` (epoch, loss, mean rank per split).
        seconds: wall time of the whole experiment.
        deltas: dataset -> training -> the trained ``WeightDelta`` (not saved by default).
    """

    model: dict[str, Any]
    config: dict[str, Any]
    datasets: tuple[str, ...]
    ranks: dict[str, dict[str, dict[str, list[int]]]]
    n_options: dict[str, dict[str, int]]
    histories: dict[str, dict[str, list[dict[str, float]]]]
    seconds: float = 0.0
    deltas: dict[str, dict[str, WeightDelta]] = field(default_factory=dict, repr=False)

    def mean_ranks(self) -> dict[str, dict[str, dict[str, float]]]:
        """dataset -> mode -> split -> mean rank."""
        return {
            ds: {mode: {s: mean(r) for s, r in splits.items()} for mode, splits in modes.items()}
            for ds, modes in self.ranks.items()
        }

    def table(self) -> list[dict[str, Any]]:
        """The six rows of docs/method.md §5.3: per dataset fact / implication / control mean rank,
        then the paper's fact / implication numbers (None where the paper has none)."""
        means = self.mean_ranks()
        rows = []
        for mode, label in MODES.items():
            row: dict[str, Any] = {"setting": label}
            for ds in self.datasets:
                m = means[ds][mode]
                row[f"{ds} fact"] = m.get(FACTS)
                row[f"{ds} impl."] = m.get(IMPLICATIONS)
                row[f"{ds} control"] = m.get(CONTROL)
            for ds in self.datasets:
                paper = PAPER[mode].get(ds)
                row[f"paper {ds} fact"] = None if paper is None else paper[0]
                row[f"paper {ds} impl."] = None if paper is None else paper[1]
            rows.append(row)
        return rows

    def summary(self) -> dict[str, float]:
        """Flat metrics ``<dataset>/<mode>/<split>`` (mean rank) and ``<dataset>/<mode>/ocr_effect``
        (control minus implication rank, paired by item), for sweeps."""
        out: dict[str, float] = {}
        for ds, modes in self.ranks.items():
            for mode, splits in modes.items():
                for split, r in splits.items():
                    out[f"{ds}/{mode}/{split}"] = mean(r)
                if IMPLICATIONS in splits and CONTROL in splits:
                    out[f"{ds}/{mode}/ocr_effect"] = paired_effect(
                        splits[IMPLICATIONS], splits[CONTROL]
                    )[0]
        return out

    def chance(self, dataset: str, split: str = IMPLICATIONS) -> float:
        return chance(self.n_options[dataset][split])

    def figure(self) -> go.Figure:
        """Grouped bars: mean rank per setting, ours beside the paper's, per dataset and split."""
        from extractive_lens.experiments.figures import grouped_bars_figure

        groups = list(MODES.values())
        means = self.mean_ranks()
        series: dict[str, list[float | None]] = {}
        for ds in self.datasets:
            for split, short in ((FACTS, "fact"), (IMPLICATIONS, "impl.")):
                series[f"{ds} {short}"] = [means[ds][m].get(split) for m in MODES]
                series[f"paper {ds} {short}"] = [
                    (PAPER[m].get(ds) or (None, None))[split == IMPLICATIONS] for m in MODES
                ]
        first = self.datasets[0]
        return grouped_bars_figure(
            groups,
            series,
            hline=self.chance(first),
            title=f"Layer freezing on {self.model['name']} (early = layers "
            f"{self.config['early_layers'][0]}-{self.config['early_layers'][-1]}, late = "
            f"{self.config['late_layers'][0]}-{self.config['late_layers'][-1]})",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **base_dict("freezing", self),
            "datasets": list(self.datasets),
            "table": self.table(),
            "summary": self.summary(),
            "ranks": self.ranks,
            "n_options": self.n_options,
            "histories": self.histories,
            "paper": {m: {d: list(v) for d, v in p.items()} for m, p in PAPER.items()},
        }

    def save(self, out_dir: str | Path, overwrite: bool = False, save_deltas: bool = False) -> Path:
        """Write ``results.json`` and ``figure.html`` (and, with ``save_deltas``, the deltas)."""
        deltas = (
            {f"{ds}_{name}": d for ds, ts in self.deltas.items() for name, d in ts.items()}
            if save_deltas
            else None
        )
        return save_result(self, out_dir, overwrite=overwrite, deltas=deltas)


def layer_freezing(
    model: TransformerBridge,
    datasets: Sequence[OCRDataset | str] | None = None,
    *,
    config: FreezingConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> FreezingResult:
    """Run the layer-freezing experiment on each dataset (three trainings per dataset).

    Args:
        model: the model; its weights are unchanged afterwards.
        datasets: ``OCRDataset``s or built-in names (drawn with ``data_seed``); default
            ``config.datasets`` (first-hop and second-hop).
        config: the settings (:class:`FreezingConfig`: lr, epochs, batch_size, seed,
            data_seed, early_fraction, paraphrases, track); keywords override single fields.
            ``early_fraction``: the early layers are the first
            ``floor(early_fraction * n_layers)`` (at least one, and at least one late layer
            remains). ``track=False`` evaluates only the final rows (about half the cost).
    """
    start = time.perf_counter()
    c = FreezingConfig.build(config, overrides, "layer_freezing")
    datasets = c.datasets if datasets is None else datasets
    if not datasets:
        raise ValueError("layer_freezing: no datasets given")
    data = [resolve_dataset(d, c.data_seed, model.tokenizer) for d in datasets]
    names = [d.name for d in data]
    if len(set(names)) != len(names):
        raise ValueError(f"layer_freezing: dataset names must differ, got {names}")
    early, late = early_late_layers(int(model.cfg.n_layers), c.early_fraction)
    per_dataset = {ds.name: _freeze_one(model, ds, c, early, late, progress) for ds in data}
    return FreezingResult(
        model=model_identity(model),
        config={
            **c.training(),
            "data_seed": c.data_seed,
            "early_fraction": c.early_fraction,
            "early_layers": early,
            "late_layers": late,
            "paraphrases": c.paraphrases,
            "trainable": "block linear weights",
            "track": c.track,
        },
        datasets=tuple(names),
        ranks={name: r[0] for name, r in per_dataset.items()},
        n_options={name: r[1] for name, r in per_dataset.items()},
        histories={name: r[2] for name, r in per_dataset.items()},
        seconds=time.perf_counter() - start,
        deltas={name: r[3] for name, r in per_dataset.items()},
    )


def _freeze_one(
    model: TransformerBridge,
    ds: OCRDataset,
    c: FreezingConfig,
    early: list[int],
    late: list[int],
    progress: bool,
) -> tuple[dict, dict, dict, dict]:
    """One dataset: the three trainings (full, early frozen, late frozen), then the ranks of the
    six settings, with the options, the trainings' histories and deltas."""
    splits = [s for s in (FACTS, IMPLICATIONS, CONTROL) if s in ds.splits()]
    tracked = {s: (ds.split(s).examples, ds.options_for(s)) for s in splits}
    train = ds.facts + (ds.paraphrased_facts() if c.paraphrases else ())
    runs = {
        name: finetune(
            model,
            train,
            trainable=trainable,
            eval_sets=tracked if c.track else None,
            progress=progress,
            **c.recipe(),
        )
        for name, trainable in (("full", None), ("early_frozen", late), ("late_frozen", early))
    }
    full = runs["full"].delta
    applied = {
        "none": full,
        "early_reverted": full.restrict(layers=late),
        "late_reverted": full.restrict(layers=early),
        "all_reverted": full.restrict(layers=[]),
        "early_frozen": runs["early_frozen"].delta,
        "late_frozen": runs["late_frozen"].delta,
    }
    ranks = {
        mode: split_ranks(model, ds, splits, delta=applied[mode], batch_size=c.eval_batch_size)
        for mode in MODES
    }
    histories = {
        k: [{key.removeprefix("rank/"): v for key, v in row.items()} for row in r.history]
        for k, r in runs.items()
    }
    n_options = {s: len(ds.options_for(s)) for s in splits}
    return ranks, n_options, histories, {k: r.delta for k, r in runs.items()}
