"""Experiment 6 (method §5.6, §7): graft localisation — does the graft install OCR's downstream?

:func:`graft_localisation` is the paper's experiment as the authors' ``localization.py`` runs it.
From the paper's weight grafting (:func:`.grafting.weight_grafting`, training names) it takes
Delta_F and the graft Delta_{F,I(F)}, and computes two scores per cell:

- **x, informative score of the graft**: ``scores.informative_scores`` at theta + Delta_F with
  delta = Delta_{F,I(F)}, on the zong prompts of the first 20 *training* names (the names the
  graft was trained on): which components the graft wrote into;
- **y, downstream score of OCR on new names**: at theta + Delta_F + Delta_{F,I(F)}, a fresh
  finetune on the dax facts of the 20 *held-out* names (never seen by any earlier training) gives
  Delta_test; ``scores.downstream_scores`` at theta + Delta_F + Delta_{F,I(F)} with delta =
  Delta_test, on the held-out names' zong prompts: which components, with their grafted weights,
  turn the newly learned facts into the implication.

A *cell* is one MLP or one attention head at one canonical token position (the zong template with
``X Y`` in the name's place, as the authors' ``acc_point``), scores averaged over the items. If the
graft installs the downstream part of the extractive structure, x and y correlate across cells:
the paper reports r² = 0.49 (MLPs) and 0.28 (heads) on OLMo-7B. The result also records how well
the grafted model answers the held-out names' zong after their facts were learned (``ocr_ranks``).

:func:`graft_localisation_counterfactual_variant` is this library's earlier design, kept under a
name that says what it is: on the 20 held-out names only, the graft's informative score at
theta + Delta_{F'} and the downstream score of Delta_{F'} (trained from theta) at theta + graft, on
I(F'). It has no new names, so it does not test OCR on new names, and its r² is not the paper's.

>>> from extractive_lens import tiny_model
>>> from extractive_lens.experiments.localisation import graft_localisation
>>> result = graft_localisation(tiny_model(), lr=3e-3, epochs=1, n_train=8, progress=False)
>>> [row["components"] for row in result.table()][:2]
['MLPs', 'heads']
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import OCRDataset, Split
from extractive_lens.delta import WeightDelta
from extractive_lens.experiments.common import (
    base_dict,
    head,
    mean,
    r_squared,
    resolve_dataset,
    save_result,
)
from extractive_lens.experiments.grafting import (
    CF_IMPLICATIONS,
    GraftResult,
    weight_grafting,
    weight_grafting_heldout_variant,
)
from extractive_lens.experiments.protocol import ResultMixin
from extractive_lens.experiments.settings import LocalisationConfig, LocalisationVariantConfig
from extractive_lens.metrics import ranks
from extractive_lens.models import model_identity
from extractive_lens.scores import ComponentScores, downstream_scores, informative_scores
from extractive_lens.scores.align import AlignmentError
from extractive_lens.training import finetune

if TYPE_CHECKING:
    import plotly.graph_objects as go

#: The paper's r² (OLMo-7B, docs/method.md §5.6).
PAPER = {"MLPs": 0.49, "heads": 0.28}
KINDS = {"mlp": "MLPs", "heads": "heads", "kv_heads": "K/V heads"}
N_INFORMATIVE_ITEMS = 20  # the authors score the first 20 training names


@dataclass(frozen=True)
class LocalisationResult(ResultMixin):
    """What ``graft_localisation`` measured.

    Attributes:
        model: the model's identity.
        config: the grafting recipe (lr, epochs, batch size, seed, dataset seed).
        dataset: the dataset's name.
        positions: the canonical position labels (``"all"`` when the items could not be aligned
            and scores were summed over positions instead).
        informative: kind (``mlp``, ``heads``, ``kv_heads``) -> graft informative scores, nested
            lists ``[pos][layer]`` (MLPs) or ``[pos][layer][head]``, mean over items.
        downstream: the same for the OCR downstream scores.
        graft_ranks: the grafting result's mean ranks of theta + Delta_{F'} + graft.
        ocr_ranks: for the paper's design, mean ranks at theta + Delta_F + graft + Delta_test of
            the held-out names' facts and implications (did OCR on the new names happen?).
        seconds: wall time (including the grafting trainings unless they were passed in).
    """

    model: dict[str, Any]
    config: dict[str, Any]
    dataset: str
    positions: tuple[str, ...]
    informative: dict[str, list]
    downstream: dict[str, list]
    graft_ranks: dict[str, float]
    ocr_ranks: dict[str, float] | None = None
    seconds: float = 0.0

    def cells(self, kind: str) -> tuple[list[float], list[float], list[str]]:
        """Flat (informative, downstream, label) over every cell of ``kind``."""
        inf = torch.tensor(self.informative[kind])
        down = torch.tensor(self.downstream[kind])
        labels = []
        for index in torch.cartesian_prod(*[torch.arange(n) for n in inf.shape]).reshape(
            -1, inf.ndim
        ):
            pos, layer, *head = index.tolist()
            if kind == "mlp":
                name = f"L{layer}.MLP"
            else:
                name = f"L{layer}.{'KV' if kind == 'kv_heads' else 'H'}{head[0]}"
            labels.append(f"{name} @ {self.positions[pos]!r}")
        return inf.flatten().tolist(), down.flatten().tolist(), labels

    def r2(self) -> dict[str, float]:
        """kind label (``MLPs``, ``heads``, ``K/V heads``) -> r² of downstream on informative."""
        return {KINDS[k]: r_squared(*self.cells(k)[:2])[0] for k in self.informative}

    def table(self) -> list[dict[str, Any]]:
        """One row per component kind: cells, Pearson r (signed), r², the least-squares slope
        of downstream on informative, and the paper's r²."""
        rows = []
        for kind in self.informative:
            x, y, _ = self.cells(kind)
            r2, slope, _ = r_squared(x, y)
            r = math.copysign(math.sqrt(r2), slope) if math.isfinite(r2) else math.nan
            rows.append(
                {
                    "components": KINDS[kind],
                    "cells": len(x),
                    "r": r,
                    "r²": r2,
                    "slope": slope,
                    "paper r²": PAPER.get(KINDS[kind]),
                }
            )
        return rows

    def summary(self) -> dict[str, float]:
        out = {f"r2/{k}": v for k, v in self.r2().items()}
        out.update({f"graft/{k}": v for k, v in self.graft_ranks.items()})
        out.update({f"ocr/{k}": v for k, v in (self.ocr_ranks or {}).items()})
        return out

    def figure(self) -> go.Figure:
        """Scatter of OCR downstream (y) on graft informative (x) per cell, with r² per kind."""
        from extractive_lens.experiments.figures import scatter_fit_figure

        panels = {KINDS[k]: self.cells(k) for k in self.informative}
        return scatter_fit_figure(
            panels,
            x_title="graft informative score",
            y_title="OCR downstream score",
            paper_r2=PAPER,
            title=f"Graft localisation ({self.config.get('design', 'paper')}) on "
            f"{self.model['name']} (cells: component x position)",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **base_dict("localisation", self),
            "dataset": self.dataset,
            "table": self.table(),
            "summary": self.summary(),
            "positions": list(self.positions),
            "informative": self.informative,
            "downstream": self.downstream,
            "graft_ranks": self.graft_ranks,
            "ocr_ranks": self.ocr_ranks,
            "paper": PAPER,
        }

    def save(self, out_dir: str | Path, overwrite: bool = False, save_deltas: bool = False) -> Path:
        """Write ``results.json`` and ``figure.html`` (no deltas: see the grafting result)."""
        return save_result(self, out_dir, overwrite=overwrite)


def graft_localisation(
    model: TransformerBridge,
    dataset: OCRDataset | str | None = None,
    *,
    grafting: GraftResult | None = None,
    config: LocalisationConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> LocalisationResult:
    """The paper's graft localisation (module doc).

    Args:
        model: the model; its weights are unchanged afterwards.
        dataset: as for ``weight_grafting``, plus ``test_facts`` / ``test_implications`` (the
            held-out names; default ``config.dataset``, ``daxwug(data_seed, prompts="paper")``).
        grafting: a finished paper-design ``weight_grafting`` result on this model and dataset
            to reuse (its deltas); otherwise its four trainings run here with the given recipe.
        config: the settings (:class:`LocalisationConfig`: the recipe of the trainings, also of
            Delta_test, and ``n_train`` as for ``weight_grafting``, quick runs only); keywords
            override single fields.
    """
    start = time.perf_counter()
    c = LocalisationConfig.build(config, overrides, "graft_localisation")
    ds = resolve_dataset(c.dataset if dataset is None else dataset, c.data_seed, model.tokenizer)
    if c.n_train is not None:
        ds = head(ds, len(ds.facts), c.n_train)
    if grafting is None:
        grafting = weight_grafting(model, ds, config=c, n_train=None, progress=progress)
    _check_grafting(grafting, ds, "paper")
    delta_f, graft = grafting.deltas["F"], grafting.deltas["F,I(F)"]
    grafted = delta_f + graft  # theta + Delta_F + Delta_{F,I(F)}
    test_facts, test_impl = ds.split("test_facts"), ds.split("test_implications")
    recipe = {k: grafting.config[k] for k in ("lr", "epochs", "batch_size", "seed")}
    delta_test = finetune(
        model,
        test_facts.examples,
        eval_batch_size=c.eval_batch_size,
        base=grafted,
        progress=progress,
        **recipe,
    ).delta
    downstream, ocr_ranks = _ocr_on_new_names(
        model, grafted, delta_test, test_facts, test_impl, c.eval_batch_size
    )
    train_impl = ds.split("train_implications")
    with delta_f.applied(model):  # the graft's informative score on the names it was trained on
        informative = informative_scores(
            model, graft, train_impl.examples[:N_INFORMATIVE_ITEMS], train_impl.options,
            batch_size=c.eval_batch_size,
        )  # fmt: skip
    template = _canonical_template(train_impl.examples[0])
    config = {
        **grafting.config,
        "informative": f"graft at theta + Delta_F on the first {N_INFORMATIVE_ITEMS} "
        "train_implications",
        "downstream": "Delta_test (test_facts, trained at theta + Delta_F + graft) at "
        "theta + Delta_F + graft on test_implications",
    }
    cells = _cells(informative, downstream, template)
    return _result(model, config, ds, cells, grafting, ocr_ranks, start)


def _ocr_on_new_names(
    model: TransformerBridge,
    grafted: WeightDelta,
    delta_test: WeightDelta,
    test_facts: Split,
    test_impl: Split,
    batch_size: int,
) -> tuple[ComponentScores, dict[str, float]]:
    """At theta + Delta_F + graft: Delta_test's downstream scores on the held-out names' zong,
    and the mean ranks of their facts and zong once Delta_test is added (did OCR happen?)."""
    with grafted.applied(model):
        downstream = downstream_scores(
            model, delta_test, test_impl.examples, test_impl.options, batch_size=batch_size
        )
        with delta_test.applied(model):
            ocr_ranks = {
                name: mean(
                    ranks(model, split.examples, split.options, batch_size=batch_size).tolist()
                )
                for name, split in (("held-out facts", test_facts), ("held-out zong", test_impl))
            }
    return downstream, ocr_ranks


def _result(
    model: TransformerBridge,
    config: dict[str, Any],
    ds: OCRDataset,
    cells: tuple[tuple[str, ...], dict[str, list], dict[str, list]],
    grafting: GraftResult,
    ocr_ranks: dict[str, float] | None,
    start: float,
) -> LocalisationResult:
    """The result of either design, from its canonical cells (``_cells``)."""
    positions, inf_t, down_t = cells
    return LocalisationResult(
        model=model_identity(model),
        config=config,
        dataset=ds.name,
        positions=positions,
        informative=inf_t,
        downstream=down_t,
        graft_ranks=grafting.mean_ranks()["graft"],
        ocr_ranks=ocr_ranks,
        seconds=time.perf_counter() - start,
    )


def graft_localisation_counterfactual_variant(
    model: TransformerBridge,
    dataset: OCRDataset | str | None = None,
    *,
    grafting: GraftResult | None = None,
    config: LocalisationVariantConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> LocalisationResult:
    """Not the paper's design (module doc): the graft's informative score at theta + Delta_{F'}
    against Delta_{F'}'s downstream score at theta + graft, both on I(F') of the 20 held-out
    names. ``grafting``: a ``weight_grafting_heldout_variant`` result to reuse; settings
    :class:`LocalisationVariantConfig` (keywords override single fields)."""
    start = time.perf_counter()
    c = LocalisationVariantConfig.build(
        config, overrides, "graft_localisation_counterfactual_variant"
    )
    ds = resolve_dataset(c.dataset if dataset is None else dataset, c.data_seed, model.tokenizer)
    if grafting is None:
        grafting = weight_grafting_heldout_variant(model, ds, config=c, progress=progress)
    _check_grafting(grafting, ds, "heldout_variant")
    split = ds.split(CF_IMPLICATIONS)
    graft, counterfactual = grafting.deltas["F,I(F)"], grafting.deltas["F'"]
    with counterfactual.applied(model):
        informative = informative_scores(
            model, graft, split.examples, split.options, batch_size=c.eval_batch_size
        )
    with graft.applied(model):
        downstream = downstream_scores(
            model, counterfactual, split.examples, split.options, batch_size=c.eval_batch_size
        )
    config = {**grafting.config, "scored": CF_IMPLICATIONS}
    cells = _cells(informative, downstream, None)
    return _result(model, config, ds, cells, grafting, None, start)


def _check_grafting(grafting: GraftResult, ds: OCRDataset, design: str) -> None:
    if not grafting.deltas:
        raise ValueError("graft localisation: the grafting result carries no deltas")
    if grafting.dataset != ds.name:
        raise ValueError(f"grafting ran on {grafting.dataset!r}, not on {ds.name!r}")
    if grafting.config.get("design") != design:
        raise ValueError(
            f"this localisation needs a {design!r} grafting result, got "
            f"{grafting.config.get('design')!r}"
        )


def _canonical_template(example: Any) -> str | None:
    """The zong template with ``X Y`` in the name's place (the authors' ``acc_point``)."""
    return None if example.template is None else example.template.format("X Y")


def _cells(
    informative: ComponentScores, downstream: ComponentScores, template: str | None
) -> tuple[tuple[str, ...], dict[str, list], dict[str, list]]:
    """Canonical positions and each kind's mean-over-items scores ``[pos][layer](head)``; summed
    over positions (one position ``"all"``) when the items cannot be aligned."""
    try:
        inf, down = informative.canonical(template), downstream.canonical(template)
        if inf.labels != down.labels:
            raise AlignmentError(f"canonical labels differ: {inf.labels} vs {down.labels}")
        positions = tuple(inf.labels)
        inf_t, down_t = inf._tensors(), down._tensors()
    except AlignmentError:
        positions = ("all",)
        inf_t, down_t = (
            {k: None if v is None else v.sum(0, keepdim=True) for k, v in s.mean_examples().items()}
            for s in (informative, downstream)
        )
    return (
        positions,
        {k: v.tolist() for k, v in inf_t.items() if v is not None},
        {k: v.tolist() for k, v in down_t.items() if v is not None},
    )
