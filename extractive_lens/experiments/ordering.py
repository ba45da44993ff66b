"""Experiment 4 (docs/method.md §5.4): data ordering — must facts come before their implications?

On the dax / wug / zong dataset (``data.daxwug``), continue training on the 84 training names in
one of three orders, then finetune on the facts of the 20 held-out names and measure their
implications (``zong``), which were never trained for those names:

- **joint**: the training facts (dax) and implications (zong) shuffled together, ``epochs`` epochs;
- **facts_first**: ``epochs`` epochs of training facts, then ``epochs`` of training implications;
- **implications_first**: the other way round.

Every phase starts a fresh Adam optimiser; every training example is seen ``epochs`` times in
each order. Phase 2 (all orders): ``finetune_epochs`` epochs on the held-out facts. The mean rank
of the training facts / implications, the held-out facts / implications and the deranged-pairing
control are tracked after every epoch of every phase. The paper (OLMo-7B) finds the held-out
implication rank about 0.8 joint, 1.3 facts-first and 6.4 implications-first.

>>> from extractive_lens import tiny_model, daxwug
>>> from extractive_lens.experiments.ordering import data_ordering
>>> result = data_ordering(tiny_model(), daxwug(), orders=["joint"], lr=3e-3, epochs=1,
...                        progress=False)
>>> [p["split"] for p in result.phases["joint"]]
['train_facts+train_implications', 'facts']
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import CONTROL, FACTS, IMPLICATIONS, OCRDataset
from extractive_lens.delta import WeightDelta
from extractive_lens.experiments.common import (
    base_dict,
    chance,
    mean,
    paired_effect,
    require_splits,
    resolve_dataset,
    save_result,
)
from extractive_lens.experiments.protocol import ResultMixin
from extractive_lens.experiments.settings import OrderingConfig
from extractive_lens.metrics import ranks
from extractive_lens.models import model_identity
from extractive_lens.training import finetune

if TYPE_CHECKING:
    import plotly.graph_objects as go

TRAIN_FACTS = "train_facts"
TRAIN_IMPLICATIONS = "train_implications"

#: Order name -> the phase-1 sub-phases, each a tuple of the splits trained together.
ORDERS: dict[str, tuple[tuple[str, ...], ...]] = {
    "joint": ((TRAIN_FACTS, TRAIN_IMPLICATIONS),),
    "facts_first": ((TRAIN_FACTS,), (TRAIN_IMPLICATIONS,)),
    "implications_first": ((TRAIN_IMPLICATIONS,), (TRAIN_FACTS,)),
}

#: The paper's held-out implication mean rank per order (OLMo-7B, docs/method.md §5.4).
PAPER = {"joint": 0.8, "facts_first": 1.3, "implications_first": 6.4}

#: Splits tracked through every phase, in table order.
TRACKED = (TRAIN_FACTS, TRAIN_IMPLICATIONS, FACTS, IMPLICATIONS, CONTROL)
LABELS = {
    TRAIN_FACTS: "train facts (84 names)",
    TRAIN_IMPLICATIONS: "train implications (84 names)",
    FACTS: "held-out facts",
    IMPLICATIONS: "held-out implications",
    CONTROL: "held-out control",
}


@dataclass(frozen=True)
class OrderingResult(ResultMixin):
    """What ``data_ordering`` measured.

    Attributes:
        model: the model's identity.
        config: lr, epochs, finetune_epochs, batch size, seed, dataset seed, orders.
        dataset: the dataset's name.
        phases: order -> one record per training phase: ``split`` (the splits trained, joined
            by ``+``), ``n_train`` (examples), ``epochs``, ``seconds``.
        history: order -> one row per epoch over all phases: ``epoch`` (cumulative),
            ``examples_seen`` (cumulative), ``phase`` (index), ``loss``, and the mean rank of
            each tracked split (``train_facts``, ``train_implications``, ``facts``,
            ``implications``, ``control_implications``). Row 0 is before any training.
        final_ranks: order -> split -> per-item ranks after phase 2.
        n_options: split -> number of options.
        seconds: wall time of the whole experiment.
        deltas: order -> the total change (sum of the phases' deltas; not saved by default).
    """

    model: dict[str, Any]
    config: dict[str, Any]
    dataset: str
    phases: dict[str, list[dict[str, Any]]]
    history: dict[str, list[dict[str, float]]]
    final_ranks: dict[str, dict[str, list[int]]]
    n_options: dict[str, int]
    seconds: float = 0.0
    deltas: dict[str, WeightDelta] = field(default_factory=dict, repr=False)

    def final(self) -> dict[str, dict[str, float]]:
        """order -> split -> mean rank after phase 2."""
        return {o: {s: mean(r) for s, r in sp.items()} for o, sp in self.final_ranks.items()}

    def after_phase1(self) -> dict[str, dict[str, float]]:
        """order -> split -> mean rank at the end of continued training (before phase 2)."""
        out = {}
        for order, rows in self.history.items():
            last = max(i for i, p in enumerate(self.phases[order]) if p["stage"] == 1)
            row = [r for r in rows if r["phase"] == last][-1]
            out[order] = {s: row[s] for s in TRACKED if s in row}
        return out

    def table(self) -> list[dict[str, Any]]:
        """One row per order: held-out implication / control / fact rank after phase 2, the
        training-name ranks after phase 1, the paired OCR effect, and the paper's number."""
        final, mid = self.final(), self.after_phase1()
        rows = []
        for order in self.final_ranks:
            ranks = self.final_ranks[order]
            effect, se = paired_effect(ranks.get(IMPLICATIONS, []), ranks.get(CONTROL, []))
            rows.append(
                {
                    "order": order,
                    "held-out impl.": final[order].get(IMPLICATIONS),
                    "held-out control": final[order].get(CONTROL),
                    "held-out fact": final[order].get(FACTS),
                    "train fact (phase 1)": mid[order].get(TRAIN_FACTS),
                    "train impl. (phase 1)": mid[order].get(TRAIN_IMPLICATIONS),
                    "ocr effect": effect,
                    "ocr effect se": se,
                    "paper held-out impl.": PAPER.get(order),
                }
            )
        return rows

    def summary(self) -> dict[str, float]:
        """Flat metrics ``<order>/<split>`` (final mean rank), ``<order>/phase1/<split>`` and
        ``<order>/ocr_effect``, for sweeps."""
        out: dict[str, float] = {}
        mid = self.after_phase1()
        for order, splits in self.final().items():
            out.update({f"{order}/{s}": v for s, v in splits.items()})
            out.update({f"{order}/phase1/{s}": v for s, v in mid[order].items()})
            ranks = self.final_ranks[order]
            out[f"{order}/ocr_effect"] = paired_effect(
                ranks.get(IMPLICATIONS, []), ranks.get(CONTROL, [])
            )[0]
        return out

    def figure(self) -> go.Figure:
        """Curves: one panel per tracked split, one line per order, against training examples
        seen (so phase 2 starts at the same x for every order); dotted lines mark phase ends."""
        from extractive_lens.experiments.figures import curves_figure

        panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        for split in TRACKED:
            panel = {}
            for order, rows in self.history.items():
                pts = [(r["examples_seen"], r[split]) for r in rows if split in r]
                if pts:
                    panel[order] = ([p[0] for p in pts], [p[1] for p in pts])
            if panel:
                panels[LABELS[split]] = panel
        vlines = {order: _phase_ends(rows)[:-1] for order, rows in self.history.items()}
        hlines = {LABELS[s]: chance(n) for s, n in self.n_options.items() if s in LABELS}
        return curves_figure(
            panels,
            x_title="training examples seen",
            hlines=hlines,
            vlines=vlines,
            cols=3,
            title=f"Data ordering on {self.model['name']} (dotted: end of each phase)",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **base_dict("ordering", self),
            "dataset": self.dataset,
            "table": self.table(),
            "summary": self.summary(),
            "phases": self.phases,
            "history": self.history,
            "final_ranks": self.final_ranks,
            "n_options": self.n_options,
            "paper": PAPER,
        }

    def save(self, out_dir: str | Path, overwrite: bool = False, save_deltas: bool = False) -> Path:
        """Write ``results.json`` and ``figure.html`` (and, with ``save_deltas``, the deltas)."""
        return save_result(
            self, out_dir, overwrite=overwrite, deltas=self.deltas if save_deltas else None
        )


def _phase_ends(rows: list[dict[str, float]]) -> list[float]:
    ends = []
    for a, b in zip(rows, rows[1:], strict=False):
        if b["phase"] != a["phase"]:
            ends.append(a["examples_seen"])
    return [*ends, rows[-1]["examples_seen"]]


def data_ordering(
    model: TransformerBridge,
    dataset: OCRDataset | str | None = None,
    *,
    config: OrderingConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> OrderingResult:
    """Run continued training in each order, then finetune on the held-out facts.

    Args:
        model: the model; its weights are unchanged afterwards.
        dataset: needs ``train_facts``, ``train_implications``, ``facts``, ``implications``
            (default: ``config.dataset``, ``daxwug``, drawn with ``data_seed``).
        config: the settings (:class:`OrderingConfig`); keywords override single fields.
            ``orders``: a subset of ``ORDERS``; ``epochs``: epochs of each phase-1 sub-phase (so
            each training example is seen ``epochs`` times in every order);
            ``finetune_epochs``: epochs of phase 2 (default ``epochs``); ``seed``: shuffling
            seed, the same for every phase; ``track_train``: track the training splits on their
            first ``track_train`` names only (training always uses every name).
    """
    start = time.perf_counter()
    c = OrderingConfig.build(config, overrides, "data_ordering")
    ds = resolve_dataset(c.dataset if dataset is None else dataset, c.data_seed, model.tokenizer)
    require_splits(ds, (TRAIN_FACTS, TRAIN_IMPLICATIONS, FACTS, IMPLICATIONS), "data_ordering")
    orders = list(c.orders)
    unknown = [o for o in orders if o not in ORDERS]
    if unknown or not orders:
        raise ValueError(f"orders must be a non-empty subset of {list(ORDERS)}, got {orders}")
    finetune_epochs = c.epochs if c.finetune_epochs is None else c.finetune_epochs
    tracked = _tracked(ds, c.track_train)
    runs = {
        order: _run_order(model, ds, order, finetune_epochs, tracked, c, progress)
        for order in orders
    }
    config = {
        **c.training(),
        "finetune_epochs": finetune_epochs,
        "data_seed": ds.seed,
        "orders": orders,
        "trainable": "block linear weights",
        "optimizer": "fresh Adam per phase",
        "track_train": c.track_train,
    }
    return OrderingResult(
        model=model_identity(model),
        config=config,
        dataset=ds.name,
        phases={order: run.phases for order, run in runs.items()},
        history={order: run.history for order, run in runs.items()},
        final_ranks={order: run.final_ranks for order, run in runs.items()},
        n_options={s: len(opts) for s, (_, opts) in tracked.items()},
        seconds=time.perf_counter() - start,
        deltas={order: run.delta for order, run in runs.items()},
    )


def _tracked(ds: OCRDataset, track_train: int | None) -> dict[str, tuple[tuple, tuple]]:
    """The splits tracked through every phase (the ``train_*`` ones cut to ``track_train``)."""
    if track_train is not None and track_train < 1:
        raise ValueError(f"track_train must be >= 1 or None, got {track_train}")
    return {
        s: (
            ds.split(s).examples[: track_train if s.startswith("train") else None],
            ds.options_for(s),
        )
        for s in TRACKED
        if s in ds.splits()
    }


@dataclass(frozen=True)
class _OrderRun:
    """One order's phases: their records, the epoch rows, the final ranks and the total delta."""

    phases: list[dict[str, Any]]
    history: list[dict[str, float]]
    final_ranks: dict[str, list[int]]
    delta: WeightDelta


def _run_order(
    model: TransformerBridge,
    ds: OCRDataset,
    order: str,
    finetune_epochs: int,
    tracked: dict[str, tuple[tuple, tuple]],
    c: OrderingConfig,
    progress: bool,
) -> _OrderRun:
    """Phase 1 in ``order`` then phase 2 on the held-out facts, each phase trained on top of the
    previous ones (a fresh Adam per phase), and the tracked splits ranked at the end."""
    plan = [(splits, c.epochs, 1) for splits in ORDERS[order]] + [((FACTS,), finetune_epochs, 2)]
    rows: list[dict[str, float]] = []
    records: list[dict[str, Any]] = []
    total: WeightDelta | None = None
    with contextlib.ExitStack() as stack:  # each phase trains on top of the previous ones
        for index, (splits, n_epochs, stage) in enumerate(plan):
            train = tuple(ex for s in splits for ex in ds.split(s).examples)
            recipe = {**c.recipe(), "epochs": n_epochs}
            run = finetune(model, train, eval_sets=tracked, progress=progress, **recipe)
            _append_rows(rows, run.history, index, len(train))
            records.append(
                {
                    "split": "+".join(splits),
                    "n_train": len(train),
                    "epochs": n_epochs,
                    "stage": stage,
                    "seconds": run.seconds,
                }
            )
            total = run.delta if total is None else total + run.delta
            stack.enter_context(run.delta.applied(model))
        final_ranks = {
            s: ranks(model, ex, opts, batch_size=c.eval_batch_size).tolist()
            for s, (ex, opts) in tracked.items()
        }
    return _OrderRun(records, rows, final_ranks, total)


def _append_rows(
    rows: list[dict[str, float]], history: list[dict[str, float]], phase: int, n_train: int
) -> None:
    """Add a phase's epoch rows to the order's rows, numbered on from the previous phases."""
    seen = rows[-1]["examples_seen"] if rows else 0
    for row in history:
        if rows and row["epoch"] == 0:
            continue  # the previous phase's last row already holds these numbers
        clean = {k.removeprefix("rank/"): v for k, v in row.items()}
        clean.update(epoch=len(rows), phase=phase, examples_seen=seen + row["epoch"] * n_train)
        rows.append(clean)
