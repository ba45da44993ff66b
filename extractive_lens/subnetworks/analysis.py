"""Subnetworks of an OCR-finetuned model, their heuristic core, and the extractive components.

>>> from extractive_lens import tiny_model, first_hop
>>> from extractive_lens.subnetworks import heuristic_core, MaskConfig
>>> model, data = tiny_model(), first_hop()
>>> r = heuristic_core(model, data, sparsities=(0.5,), seeds=(0,), config=MaskConfig(steps=5))
>>> [row["sparsity"] for row in r.table()]
['full', 0.5]

One call learns a mask per (target sparsity, seed) on the *facts* (in-domain: the finetuned
behaviour), evaluates each subnetwork on the facts and on the implications (out of distribution:
OCR) against the deranged control, and reports

- the **core**: units kept by every seed's subnetwork at a sparsity (Bhaskar et al.'s heuristic
  core);
- **effective size** per seed: 1 - the largest sparsity whose mean rank stays within ``margin``
  of the full model's (authors: accuracy within 3 points), for facts and for implications;
- with a ``delta``: the top-``k`` informative / upstream / downstream components of the OCR
  finetune (summed over positions, mean over implication items, positive = helps), how many lie in
  the core, and how often subnetworks that **keep** OCR (effect within ``margin`` of the full
  model's) keep them compared with subnetworks that **lose** it.

The model analysed is ``theta + delta`` (the finetuned model); the scores are computed at theta with
the delta, as everywhere in the library.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import CONTROL, FACTS, IMPLICATIONS, OCRDataset
from extractive_lens.experiments.common import (
    base_dict,
    markdown_table,
    paired_effect,
    save_result,
)
from extractive_lens.metrics import ranks
from extractive_lens.models import model_identity
from extractive_lens.subnetworks.gates import LearnedMask, MaskUnits, gated, unit_means
from extractive_lens.subnetworks.learn import MaskConfig, learn_mask

SPLITS = (FACTS, IMPLICATIONS, CONTROL)
ROLES = ("informative", "upstream", "downstream")


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


@dataclass(frozen=True)
class SubnetworkResult:
    """Subnetworks per (sparsity, seed), their ranks, the core and the score overlap.

    Attributes:
        units: gated unit names in forward order.
        full: per-item ranks of the unmasked (finetuned) model per split.
        masks: the learned subnetworks.
        mask_ranks: per-item ranks of each subnetwork per split (same order as ``masks``).
        scores: role -> unit -> mean per-item total score (None without a delta).
        margin: rank margin for "within the full model" (effective size, keeps OCR).
        top_k: how many top components per role the overlap looks at.
    """

    model: dict[str, Any]
    dataset: str
    units: tuple[str, ...]
    full: dict[str, list[int]]
    masks: tuple[LearnedMask, ...]
    mask_ranks: tuple[dict[str, list[int]], ...]
    scores: dict[str, dict[str, float]] | None
    margin: float
    top_k: int
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    # ------------------------------------------------------------------ per subnetwork

    def full_effect(self) -> float:
        return paired_effect(self.full[IMPLICATIONS], self.full[CONTROL])[0]

    def table(self) -> list[dict[str, Any]]:
        """One row per subnetwork: mean ranks, OCR effect, whether it keeps OCR."""
        rows = [self._row("full", None, 0.0, self.full, len(self.units))]
        for m, r in zip(self.masks, self.mask_ranks, strict=True):
            rows.append(self._row(m.target, m.seed, m.sparsity, r, len(m.kept)))
        return rows

    def _row(self, sparsity, seed, achieved, r, n_kept) -> dict[str, Any]:  # noqa: ANN001
        effect = paired_effect(r[IMPLICATIONS], r[CONTROL])[0]
        return {
            "sparsity": sparsity,
            "seed": seed,
            "achieved": achieved,
            "kept": n_kept,
            "facts": _mean(r[FACTS]),
            "implications": _mean(r[IMPLICATIONS]),
            "control": _mean(r[CONTROL]),
            "ocr_effect": effect,
            "keeps_ocr": effect >= self.full_effect() - self.margin,
        }

    def sparsities(self) -> list[float]:
        return sorted({m.target for m in self.masks})

    # ------------------------------------------------------------------ core and overlap

    def cores(self) -> dict[float, list[str]]:
        """Sparsity -> units kept by every seed's subnetwork (forward order)."""
        out = {}
        for s in self.sparsities():
            kept = [set(m.kept) for m in self.masks if m.target == s]
            out[s] = [u for u in self.units if all(u in k for k in kept)]
        return out

    def top_components(self, role: str) -> list[str]:
        """The ``top_k`` units with the largest positive ``role`` score (masked units only)."""
        if self.scores is None:
            return []
        values = self.scores[role]
        return sorted(self.units, key=lambda u: values.get(u, 0.0), reverse=True)[: self.top_k]

    def overlap(self) -> list[dict[str, Any]]:
        """Per sparsity and role: the top-k components in the core, and how often subnetworks
        that keep / lose OCR keep them (mean fraction of the top-k kept)."""
        if self.scores is None:
            return []
        rows = []
        keeps = [row["keeps_ocr"] for row in self.table()[1:]]
        for s, core in self.cores().items():
            for role in ROLES:
                top = set(self.top_components(role))
                frac = {True: [], False: []}
                for m, keep in zip(self.masks, keeps, strict=True):
                    if m.target == s:
                        frac[keep].append(len(top & set(m.kept)) / len(top))
                rows.append(
                    {
                        "sparsity": s,
                        "role": role,
                        "top": ", ".join(self.top_components(role)),
                        "core_size": len(core),
                        "top_in_core": len(top & set(core)),
                        "kept_if_ocr": _mean(frac[True]),
                        "kept_if_no_ocr": _mean(frac[False]),
                        "n_ocr": len(frac[True]),
                        "n_no_ocr": len(frac[False]),
                    }
                )
        return rows

    def effective_size(self) -> list[dict[str, Any]]:
        """Per seed: 1 - the largest achieved sparsity whose mean rank is within ``margin`` of
        the full model's, for facts and implications (1.0 when no subnetwork qualifies)."""
        rows = []
        for seed in sorted({m.seed for m in self.masks}):
            row: dict[str, Any] = {"seed": seed}
            for split in (FACTS, IMPLICATIONS):
                limit = _mean(self.full[split]) + self.margin
                ok = [
                    m.sparsity  # achieved, not targeted: an unpruned mask is not "sparse"
                    for m, r in zip(self.masks, self.mask_ranks, strict=True)
                    if m.seed == seed and _mean(r[split]) <= limit
                ]
                row[split] = 1.0 - max(ok, default=0.0)
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ output

    def summary(self) -> dict[str, float]:
        out = {"full_effect": self.full_effect()}
        for s, core in self.cores().items():
            out[f"core_size@{s}"] = len(core)
        for row in self.effective_size():
            for split in (FACTS, IMPLICATIONS):
                out[f"effective_size_{split}@seed{row['seed']}"] = row[split]
        return out

    def markdown(self) -> str:
        parts = [markdown_table(self.table()), ""]
        parts += [
            f"core at sparsity {s}: {', '.join(c) or '(empty)'}" for s, c in self.cores().items()
        ]
        parts += ["", markdown_table(self.effective_size())]
        if self.scores is not None:
            parts += ["", markdown_table(self.overlap())]
        return "\n".join(parts)

    def figure(self) -> Any:
        """Fact vs implication mean rank of every subnetwork (colour: sparsity), full model star."""
        import plotly.graph_objects as go

        fig = go.Figure()
        rows = self.table()
        for s in self.sparsities():
            sub = [r for r in rows[1:] if r["sparsity"] == s]
            fig.add_scatter(
                x=[r["facts"] for r in sub],
                y=[r["implications"] for r in sub],
                mode="markers",
                name=f"sparsity {s}",
                text=[f"seed {r['seed']}, control {r['control']:.2f}" for r in sub],
            )
        fig.add_scatter(
            x=[rows[0]["facts"]],
            y=[rows[0]["implications"]],
            mode="markers",
            marker={"symbol": "star", "size": 14},
            name="full model",
        )
        fig.update_layout(
            title=f"Subnetworks of {self.model.get('name')} on {self.dataset}",
            xaxis_title="fact mean rank (in-domain)",
            yaxis_title="implication mean rank (OCR)",
        )
        return fig

    def to_dict(self) -> dict[str, Any]:
        return {
            **base_dict("heuristic_core", self),
            "dataset": self.dataset,
            "units": list(self.units),
            "table": self.table(),
            "cores": {str(s): c for s, c in self.cores().items()},
            "effective_size": self.effective_size(),
            "overlap": self.overlap(),
            "full": self.full,
            "masks": [
                {
                    "target": m.target,
                    "seed": m.seed,
                    "kept": m.kept,
                    "gates": m.gates.tolist(),
                    "log_alpha": m.log_alpha.tolist(),
                    "history": [vars(h) for h in m.history],
                }
                for m in self.masks
            ],
            "mask_ranks": list(self.mask_ranks),
            "scores": self.scores,
            "margin": self.margin,
            "top_k": self.top_k,
        }

    def save(self, out_dir: str | Path, overwrite: bool = False) -> Path:
        """Write ``results.json``, ``masks.safetensors`` (log_alpha, gates), ``figure.html``."""
        from safetensors.torch import save_file

        out = save_result(self, out_dir, overwrite=overwrite)
        tensors = {}
        for m in self.masks:
            tensors[f"s{m.target}_seed{m.seed}.log_alpha"] = m.log_alpha.contiguous()
            tensors[f"s{m.target}_seed{m.seed}.gates"] = m.gates.contiguous()
        save_file(tensors, str(out / "masks.safetensors"), metadata={"units": ",".join(self.units)})
        return out


# --------------------------------------------------------------------------- the analysis


def _split_ranks(model: TransformerBridge, dataset: OCRDataset) -> dict[str, list[int]]:
    return {
        s: ranks(model, dataset.split(s).examples, dataset.options_for(s)).tolist() for s in SPLITS
    }


def component_totals(scores: Any) -> dict[str, dict[str, float]]:
    """role -> unit name -> mean over items of the score summed over positions (query heads and
    MLPs; K/V-head scores of grouped-query models are not gated units and are left out)."""
    out = {}
    for role, s in scores.roles().items():
        per = s.sum_positions()
        mlp, heads = per["mlp"].mean(0), per["heads"].mean(0)
        values = {f"L{layer}.MLP": float(mlp[layer]) for layer in range(mlp.shape[0])}
        for layer in range(heads.shape[0]):
            for h in range(heads.shape[1]):
                values[f"L{layer}.H{h}"] = float(heads[layer, h])
        out[role] = values
    return out


def heuristic_core(
    model: TransformerBridge,
    dataset: OCRDataset,
    delta: Any = None,
    *,
    sparsities: Sequence[float] = (0.3, 0.5, 0.7),
    seeds: Sequence[int] = (0, 1, 2),
    config: MaskConfig | None = None,
    train_examples: Sequence[Any] | None = None,
    margin: float = 1.0,
    top_k: int = 5,
    counterfactuals: int = 5,
    progress: bool = False,
) -> SubnetworkResult:
    """Learn subnetworks of ``theta + delta`` on the facts and analyse them (module docstring).

    Args:
        model: the model at theta (weights restored on exit).
        dataset: facts (in-domain), implications and the deranged control.
        delta: the OCR finetune's delta (``verify_ocr(...).delta``); None analyses ``model`` as is
            and skips the score overlap.
        sparsities: target fractions of pruned units, each in [0, 1).
        seeds: mask-training seeds per sparsity (the core needs >= 2).
        config: the mask recipe (default :class:`MaskConfig` ()).
        train_examples: in-domain prompts for the masks and the means (default: the facts and,
            when the dataset has them, their paraphrases).
        margin: mean-rank margin for effective size and for "keeps OCR".
        top_k: top components per role in the overlap.
        counterfactuals: K for the upstream scores.
    """
    if not sparsities or not seeds:
        raise ValueError("give at least one sparsity and one seed")
    if CONTROL not in dataset.splits():
        raise ValueError(
            f"dataset {dataset.name!r} has no {CONTROL!r} split to measure OCR against"
        )
    config = config or MaskConfig()
    start = time.perf_counter()
    train = list(train_examples or _in_domain(dataset))
    units = MaskUnits.of(model, heads=config.heads, mlps=config.mlps)
    scores = None if delta is None else _score_totals(model, dataset, delta, counterfactuals)
    with delta.applied(model) if delta is not None else contextlib.nullcontext():
        full = _split_ranks(model, dataset)
        masks, mask_ranks = _learn_masks(
            model, dataset, train, units, config, sparsities, seeds, progress
        )
    return SubnetworkResult(
        model=model_identity(model),
        dataset=dataset.name,
        units=tuple(units.names()),
        full=full,
        masks=tuple(masks),
        mask_ranks=tuple(mask_ranks),
        scores=scores,
        margin=margin,
        top_k=top_k,
        config={**config.to_dict(), "sparsities": list(sparsities), "seeds": list(seeds)},
        seconds=time.perf_counter() - start,
    )


def _learn_masks(model, dataset, train, units, config, sparsities, seeds, progress):  # noqa: ANN001, ANN202
    """One mask per (sparsity, seed) on ``train``, and the split ranks with each mask applied."""
    means = unit_means(model, units, train) if config.mean_ablate else None
    masks, mask_ranks = [], []
    for s in sparsities:
        for seed in seeds:
            mask = learn_mask(
                model, train, s, units=units, means=means, config=config, seed=seed,
                progress=progress,
            )  # fmt: skip
            with gated(model, units, mask.gates, means), torch.no_grad():
                mask_ranks.append(_split_ranks(model, dataset))
            masks.append(mask)
    return masks, mask_ranks


def _score_totals(
    model: TransformerBridge, dataset: OCRDataset, delta: Any, counterfactuals: int
) -> dict[str, dict[str, float]]:
    from extractive_lens.scores import extractive_scores

    scores = extractive_scores(
        model,
        delta,
        dataset.implications,
        dataset.implication_options,
        counterfactuals=counterfactuals,
    )
    return component_totals(scores)


def _in_domain(dataset: OCRDataset) -> list[Any]:
    try:
        return [*dataset.facts, *dataset.paraphrased_facts()]
    except ValueError:
        return list(dataset.facts)
