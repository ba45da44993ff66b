"""Experiment 6 (METHOD.md §5.6): graft localisation — does the graft install OCR's downstream part?

The weight-grafting experiment (``grafting.weight_grafting``) yields the graft
Delta_{F,I(F)} and the counterfactual facts' delta Delta_{F'}. In the grafted model
theta_g = theta + Delta_{F,I(F)}, learning the counterfactual facts is an OCR step on new
(name, city) pairs, and its implications I(F') are the held-out test. Two scores per cell:

- **informative score of the graft**: ``scores.informative_scores`` at theta + Delta_{F'} with
  delta = the graft, on I(F'): how much each component's share of the graft raises the answer;
- **downstream score of OCR**: ``scores.downstream_scores`` at theta_g with delta = Delta_{F'}, on
  I(F'): how well each component, with its (grafted) weights, turns the new facts' changed inputs
  into the answer.

A *cell* is one MLP or one attention head at one canonical token position (``"The zong of X1 ..
X5 is"``, METHOD.md §3), scores averaged over the items. If the graft installs the downstream part
of the extractive structure, the two scores correlate across cells: the paper reports r² = 0.49
(MLPs) and 0.28 (heads) on OLMo-7B. Both scores are positive when the component helps.

>>> from extractive_lens import tiny_model, daxwug
>>> from extractive_lens.experiments.localisation import graft_localisation
>>> result = graft_localisation(tiny_model(), daxwug(), lr=3e-3, epochs=1, progress=False)
>>> [row["components"] for row in result.table()][:2]
['MLPs', 'heads']
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import OCRDataset
from extractive_lens.experiments.common import base_dict, save_result
from extractive_lens.experiments.figures import r_squared, scatter_fit_figure
from extractive_lens.experiments.grafting import CF_IMPLICATIONS, GraftResult, weight_grafting
from extractive_lens.models import model_identity

#: The paper's r² (OLMo-7B, METHOD.md §5.6).
PAPER = {"MLPs": 0.49, "heads": 0.28}
KINDS = {"mlp": "MLPs", "heads": "heads", "kv_heads": "K/V heads"}


@dataclass(frozen=True)
class LocalisationResult:
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
        graft_ranks: mean ranks of theta + Delta_{F'} + graft (does the grafted model do OCR?).
        seconds: wall time (including the grafting trainings unless they were passed in).
    """

    model: dict[str, Any]
    config: dict[str, Any]
    dataset: str
    positions: tuple[str, ...]
    informative: dict[str, list]
    downstream: dict[str, list]
    graft_ranks: dict[str, float]
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
        return out

    def figure(self) -> go.Figure:
        """Scatter of OCR downstream (y) on graft informative (x) per cell, with r² per kind."""
        panels = {KINDS[k]: self.cells(k) for k in self.informative}
        return scatter_fit_figure(
            panels,
            x_title="graft informative score",
            y_title="OCR downstream score",
            paper_r2=PAPER,
            title=f"Graft localisation on {self.model['name']} (cells: component x position)",
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
    lr: float = 1e-4,
    epochs: int = 8,
    batch_size: int = 8,
    seed: int = 0,
    data_seed: int = 0,
    eval_batch_size: int = 32,
    progress: bool = True,
) -> LocalisationResult:
    """Correlate the graft's informative scores with OCR's downstream scores (module doc).

    Args:
        model: the model; its weights are unchanged afterwards.
        dataset: as for ``weight_grafting`` (default: ``daxwug(data_seed)``).
        grafting: a finished ``weight_grafting`` result on this model and dataset to reuse
            (its deltas); otherwise the four trainings run here with the given recipe.
    """
    from extractive_lens.experiments.common import resolve_dataset
    from extractive_lens.experiments.grafting import _with_counterfactual_control
    from extractive_lens.scores import downstream_scores, informative_scores
    from extractive_lens.scores.align import AlignmentError

    start = time.perf_counter()
    if grafting is None:
        grafting = weight_grafting(
            model,
            dataset,
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            data_seed=data_seed,
            eval_batch_size=eval_batch_size,
            progress=progress,
        )
    elif not grafting.deltas:
        raise ValueError("graft_localisation: the grafting result carries no deltas")
    from extractive_lens.data import daxwug

    ds = resolve_dataset(dataset if dataset is not None else daxwug(data_seed), data_seed)
    if ds.name != grafting.dataset:
        raise ValueError(f"grafting ran on {grafting.dataset!r}, not on {ds.name!r}")
    ds = _with_counterfactual_control(ds)
    split = ds.split(CF_IMPLICATIONS)
    graft, counterfactual = grafting.deltas["F,I(F)"], grafting.deltas["F'"]
    with counterfactual.applied(model):
        informative = informative_scores(
            model, graft, split.examples, split.options, batch_size=eval_batch_size
        )
    with graft.applied(model):
        downstream = downstream_scores(
            model, counterfactual, split.examples, split.options, batch_size=eval_batch_size
        )
    try:
        inf, down = informative.canonical(), downstream.canonical()
        positions = tuple(inf.labels)
        inf_t, down_t = inf._tensors(), down._tensors()
    except AlignmentError:
        positions = ("all",)
        inf_t, down_t = (
            {k: None if v is None else v.sum(0, keepdim=True) for k, v in s.mean_examples().items()}
            for s in (informative, downstream)
        )
    config = {**grafting.config, "scored": CF_IMPLICATIONS}
    return LocalisationResult(
        model=model_identity(model),
        config=config,
        dataset=ds.name,
        positions=positions,
        informative={k: v.tolist() for k, v in inf_t.items() if v is not None},
        downstream={k: v.tolist() for k, v in down_t.items() if v is not None},
        graft_ranks=grafting.mean_ranks()["graft"],
        seconds=time.perf_counter() - start,
    )
