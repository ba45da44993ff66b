"""Score containers: per item and position (:class:`ComponentScores`), per canonical position
(:class:`CanonicalScores`), and the three roles together (:class:`ExtractiveScores`).

Sign convention everywhere: positive = the component helps the correct answer (raises R).
Under grouped-query attention the K/V heads are separate components (``kv_heads``); under
multi-head attention each head owns its K and V and ``kv_heads`` is None.

**What a total means under grouped-query attention** (:func:`kv_is_additive`):

- *Informative* scores are additive over parameters: a query head owns its W_Q rows and W_O
  columns, a K/V head its W_K / W_V rows, so the components partition the attention weights and
  a layer's attention total is query heads + K/V heads (= <grad R, Delta> over the layer's
  attention weights).
- *Downstream* and *upstream* scores are taken at component outputs. A query head's output is its
  ``hook_z`` value mix, which already depends on the K and V it reads: the attention layer's output
  is W_O applied to the concatenated ``hook_z``, so the query heads' scores alone sum to the layer's
  score taken at the attention output (the identity tested in ``tests/test_scores_gqa.py``). The
  K/V-head scores (taken at the K and V projections) are a *second decomposition* of the same
  effect, by the K/V path, and adding them would count it twice. Layer totals, ``sum_heads``,
  ``total`` and every figure and graph built on them therefore use the query heads only for these
  roles; the K/V heads remain available per component.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from extractive_lens.components import Component
from extractive_lens.data import Example
from extractive_lens.scores.align import Alignment, AlignmentError
from extractive_lens.scores.informative import Coverage

KINDS = {"mlp": "mlp", "head": "heads", "kv_head": "kv_heads"}
ADDITIVE_KV_ROLES = frozenset({"informative"})


def kv_is_additive(role: str) -> bool:
    """Whether K/V-head scores of ``role`` add to the query heads' in a total (module doc):
    True for informative (a partition of the weights), False for downstream / upstream (the
    query heads' ``hook_z`` scores already carry the K/V path)."""
    return role in ADDITIVE_KV_ROLES


def attention_total(role: str, heads: Tensor, kv_heads: Tensor | None) -> Tensor:
    """Sum over the last (head) axis of one attention layer's scores, counting each effect once:
    query heads, plus the K/V heads only when ``kv_is_additive(role)``."""
    out = heads.sum(-1)
    if kv_heads is not None and kv_is_additive(role):
        out = out + kv_heads.sum(-1)
    return out


def _iter_components(mlp: Tensor, heads: Tensor, kv: Tensor | None) -> Iterator[Component]:
    """Components in forward order: per layer the heads, the K/V heads, then the MLP."""
    for layer in range(mlp.shape[-1]):
        for h in range(heads.shape[-1]):
            yield Component(layer, "head", h)
        if kv is not None:
            for g in range(kv.shape[-1]):
                yield Component(layer, "kv_head", g)
        yield Component(layer, "mlp")


def _select(t: dict[str, Tensor | None], c: Component) -> Tensor:
    tensor = t[KINDS[c.kind]]
    if tensor is None:
        raise KeyError(f"{c}: this model has no separate K/V heads (multi-head attention)")
    return tensor[..., c.layer] if c.kind == "mlp" else tensor[..., c.layer, c.head]


@dataclass(frozen=True, eq=False)
class ComponentScores:
    """One score (informative, downstream or upstream) per item, position and component.

    Attributes:
        role: ``"informative"``, ``"downstream"`` or ``"upstream"``.
        mlp: ``[example, pos, layer]``.
        heads: ``[example, pos, layer, head]`` (query heads; under MHA also their K/V).
        kv_heads: ``[example, pos, layer, kv_head]`` under grouped-query attention, else None.
        tokens: each example's prompt tokens; positions past them are padding (scores 0).
        examples: the scored examples.
        alignment: how the items' positions align (None if they could not be aligned).
        coverage: for informative scores, the share of the delta no component owns.
        counterfactuals: for upstream scores, the ``[example, K]`` counterfactual items used
            (None: zero counterfactual activation).
        canonical_template: optional prompt whose tokens label the canonical positions.
        parallel_blocks: the model's attention and MLP read the same residual (graph edges).
        integration: for integrated informative scores (``steps=m``), the quadrature and the
            exact change R(theta + Delta) - R(theta) (``scores.integrated.Integration``).
    """

    role: str
    mlp: Float[Tensor, "example pos layer"]
    heads: Float[Tensor, "example pos layer head"]
    kv_heads: Float[Tensor, "example pos layer kv_head"] | None
    tokens: tuple[tuple[str, ...], ...]
    examples: tuple[Example, ...]
    alignment: Alignment | None = None
    alignment_error: str | None = None
    coverage: Coverage | None = None
    counterfactuals: Tensor | None = None
    canonical_template: str | None = None
    tokenizer: Any = field(default=None, repr=False, compare=False)
    prepend_bos: bool | None = None
    parallel_blocks: bool = False
    integration: Any = None

    # ------------------------------------------------------------------ access

    def _tensors(self) -> dict[str, Tensor | None]:
        return {"mlp": self.mlp, "heads": self.heads, "kv_heads": self.kv_heads}

    @property
    def lengths(self) -> list[int]:
        return [len(t) for t in self.tokens]

    def components(self) -> list[Component]:
        """Every scored component, in forward order."""
        return list(_iter_components(self.mlp, self.heads, self.kv_heads))

    def component(self, c: Component) -> Float[Tensor, "example pos"]:
        """One component's scores."""
        return _select(self._tensors(), c)

    # ------------------------------------------------------------------ reductions

    def total(self, per_example: bool = False) -> Tensor:
        """Sum over all components and positions (per example, or over examples too); K/V heads
        enter only for informative scores (module doc: no effect counted twice)."""
        per = self.mlp.sum((1, 2)) + self.sum_heads().sum((1, 2))
        return per if per_example else per.sum()

    def sum_positions(self) -> dict[str, Tensor | None]:
        """``{"mlp": [example, layer], "heads": [example, layer, head], "kv_heads": ...}``."""
        return {k: None if v is None else v.sum(1) for k, v in self._tensors().items()}

    def sum_heads(self) -> Float[Tensor, "example pos layer"]:
        """Each attention layer's total per example and position: the query heads, plus the K/V
        heads for informative scores only (:func:`attention_total`)."""
        return attention_total(self.role, self.heads, self.kv_heads)

    def sum_examples(self) -> dict[str, Tensor | None]:
        """``{"mlp": [pos, layer], "heads": [pos, layer, head], ...}`` summed over examples."""
        return {k: None if v is None else v.sum(0) for k, v in self._tensors().items()}

    def mean_examples(self) -> dict[str, Tensor | None]:
        n = len(self.examples)
        return {k: None if v is None else v.sum(0) / n for k, v in self._tensors().items()}

    def layer_totals(self) -> dict[str, Tensor]:
        """``{"mlp": [layer], "attn": [layer]}`` summed over examples, positions and heads (the
        attention total as in :meth:`sum_heads`)."""
        return {"mlp": self.mlp.sum((0, 1)), "attn": self.sum_heads().sum((0, 1))}

    # ------------------------------------------------------------------ canonical

    def canonical(self, template: str | None = None, per_slot: bool = False) -> CanonicalScores:
        """Mean over items of the scores mapped onto one canonical template (docs/method.md §3).

        Upstream scores are already averaged over each item's K counterfactual samples, so this
        is the mean over items x samples. By default every position is divided by the number of
        items, so summed over canonical positions a component's canonical score equals its mean
        per-item total. With ``per_slot=True`` each position is the mean over the items that
        *have* it (an entity slot that only long entities reach is not diluted by the items
        without it): what a figure of "the score at this token" should show. ``counts`` records
        how many items reached each position.
        """
        labels, per_item, present = self.canonical_parts(template)
        n, width = len(self.examples), len(labels)
        counts = present.sum(0)
        out: dict[str, Tensor | None] = {}
        for key, tensor in per_item.items():
            if tensor is None:
                out[key] = None
            elif per_slot:
                div = counts.clamp(min=1).to(tensor).view(width, *[1] * (tensor.ndim - 2))
                out[key] = tensor.sum(0) / div
            else:
                out[key] = tensor.sum(0) / n
        group = self.alignment.groups[0]
        return CanonicalScores(
            self.role,
            out["mlp"],
            out["heads"],
            out["kv_heads"],
            labels,
            n,
            group.template,
            parallel_blocks=self.parallel_blocks,
            counts=tuple(counts.tolist()),
            per_slot=per_slot,
        )

    def canonical_interval(
        self,
        template: str | None = None,
        per_slot: bool = True,
        *,
        n_boot: int = 1000,
        level: float = 0.95,
        seed: int = 0,
    ) -> tuple[CanonicalScores, CanonicalScores]:
        """Percentile bootstrap interval over items of :meth:`canonical`: (low, high).

        Items are resampled with replacement ``n_boot`` times (seeded); each resample's canonical
        scores are computed as :meth:`canonical` does, and the ``(1 - level) / 2`` and
        ``(1 + level) / 2`` quantiles are returned per cell. No model pass is needed.
        """
        if not 0 < level < 1 or n_boot < 2:
            raise ValueError(f"need 0 < level < 1 and n_boot >= 2, got {level}, {n_boot}")
        labels, per_item, present = self.canonical_parts(template)
        n = len(self.examples)
        gen = torch.Generator().manual_seed(seed)
        draws = torch.randint(0, n, (n_boot, n), generator=gen)
        weights = torch.zeros(n_boot, n).scatter_add_(1, draws, torch.ones(n_boot, n))
        counts = (weights @ present.float()).clamp(min=1)  # [boot, pos]
        low: dict[str, Tensor | None] = {}
        high: dict[str, Tensor | None] = {}
        q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
        for key, tensor in per_item.items():
            if tensor is None:
                low[key] = high[key] = None
                continue
            flat = tensor.reshape(n, -1).double()
            sums = (weights.double() @ flat).view(n_boot, *tensor.shape[1:])
            div = counts if per_slot else torch.full_like(counts, n)
            means = sums / div.double().view(n_boot, -1, *[1] * (tensor.ndim - 2))
            lo, hi = torch.quantile(means, q, dim=0)
            low[key], high[key] = lo.to(tensor.dtype), hi.to(tensor.dtype)
        group = self.alignment.groups[0]
        counts_all = tuple(present.sum(0).tolist())
        return tuple(
            CanonicalScores(
                self.role,
                b["mlp"],
                b["heads"],
                b["kv_heads"],
                labels,
                n,
                group.template,
                parallel_blocks=self.parallel_blocks,
                counts=counts_all,
                per_slot=per_slot,
            )
            for b in (low, high)
        )

    def canonical_parts(
        self, template: str | None = None
    ) -> tuple[tuple[str, ...], dict[str, Tensor | None], Tensor]:
        """Each item's scores summed onto the canonical positions, before averaging.

        Returns the position labels, ``{"mlp": [example, pos, layer], "heads": ..., ...}`` and
        ``present`` ``[example, pos]`` (1 where the item has a token at that position).
        """
        from extractive_lens.scores.align import canonical_layout

        if self.alignment is None:
            raise AlignmentError(self.alignment_error or "these scores carry no alignment")
        slots, labels = canonical_layout(
            self.tokenizer, self.alignment, template or self.canonical_template, self.prepend_bos
        )
        n, width = len(self.examples), len(labels)
        indices = [
            self.alignment.canonical_positions(i, length, slots)
            for i, length in enumerate(self.lengths)
        ]
        present = torch.zeros(n, width, dtype=torch.long)
        for i, index in enumerate(indices):
            present[i, index.unique()] = 1
        out: dict[str, Tensor | None] = {}
        for key, tensor in self._tensors().items():
            if tensor is None:
                out[key] = None
                continue
            acc = tensor.new_zeros((n, width, *tensor.shape[2:]))
            for i, length in enumerate(self.lengths):
                acc[i].index_add_(0, indices[i].to(tensor.device), tensor[i, :length])
            out[key] = acc
        return labels, out, present

    def to_dict(self) -> dict[str, Any]:
        """Plain Python (JSON-ready) form."""
        return {
            "role": self.role,
            "mlp": self.mlp.tolist(),
            "heads": self.heads.tolist(),
            "kv_heads": None if self.kv_heads is None else self.kv_heads.tolist(),
            "tokens": [list(t) for t in self.tokens],
            "examples": [[e.prompt, e.answer] for e in self.examples],
            "coverage": None if self.coverage is None else self.coverage.to_dict(),
            "counterfactuals": None
            if self.counterfactuals is None
            else self.counterfactuals.tolist(),
            "integration": None if self.integration is None else self.integration.to_dict(),
        }


@dataclass(frozen=True, eq=False)
class CanonicalScores:
    """Scores averaged over items on the canonical template's positions.

    Attributes:
        role: ``"informative"``, ``"downstream"`` or ``"upstream"``.
        mlp: ``[pos, layer]``; heads: ``[pos, layer, head]``; kv_heads: ``[pos, layer, kv_head]``
            or None.
        labels: the canonical positions' token strings (entity slots as placeholders).
        n_items: how many items were averaged.
        template: the items' template, if known.
        parallel_blocks: the model's attention and MLP read the same residual (graph edges).
        counts: how many items reached each position (entity slots: only the long entities).
        per_slot: True when each position is the mean over its ``counts`` items, False when over
            all ``n_items`` (then positions sum to the mean per-item total).
    """

    role: str
    mlp: Float[Tensor, "pos layer"]
    heads: Float[Tensor, "pos layer head"]
    kv_heads: Float[Tensor, "pos layer kv_head"] | None
    labels: tuple[str, ...]
    n_items: int
    template: str | None = None
    parallel_blocks: bool = False
    counts: tuple[int, ...] | None = None
    per_slot: bool = False

    def _tensors(self) -> dict[str, Tensor | None]:
        return {"mlp": self.mlp, "heads": self.heads, "kv_heads": self.kv_heads}

    def components(self) -> list[Component]:
        return list(_iter_components(self.mlp, self.heads, self.kv_heads))

    def component(self, c: Component) -> Float[Tensor, " pos"]:
        return _select(self._tensors(), c)

    def sum_heads(self) -> Float[Tensor, "pos layer"]:
        """Each attention layer's total per position (:func:`attention_total`)."""
        return attention_total(self.role, self.heads, self.kv_heads)

    def total(self) -> Tensor:
        """Sum over components and positions; K/V heads only for informative scores."""
        return self.mlp.sum() + self.sum_heads().sum()

    def entries(self) -> list[tuple[Component, int, float]]:
        """Every (component, canonical position, score)."""
        out = []
        for c in self.components():
            for pos, value in enumerate(self.component(c).tolist()):
                out.append((c, pos, value))
        return out

    def top(self, k: int = 10, *, absolute: bool = False) -> list[tuple[Component, int, float]]:
        """The ``k`` highest (or largest in magnitude) (component, position, score) entries."""
        key = (lambda e: abs(e[2])) if absolute else (lambda e: e[2])
        return sorted(self.entries(), key=key, reverse=True)[:k]

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "labels": list(self.labels),
            "n_items": self.n_items,
            "template": self.template,
            "counts": None if self.counts is None else list(self.counts),
            "per_slot": self.per_slot,
            "mlp": self.mlp.tolist(),
            "heads": self.heads.tolist(),
            "kv_heads": None if self.kv_heads is None else self.kv_heads.tolist(),
        }


@dataclass(frozen=True, eq=False)
class ExtractiveScores:
    """The three scores of one delta on one set of items, from shared passes."""

    informative: ComponentScores
    downstream: ComponentScores
    upstream: ComponentScores

    def roles(self) -> dict[str, ComponentScores]:
        return {
            "upstream": self.upstream,
            "informative": self.informative,
            "downstream": self.downstream,
        }

    def canonical(
        self, template: str | None = None, per_slot: bool = False
    ) -> dict[str, CanonicalScores]:
        """Each role's canonical scores: ``{"upstream": ..., "informative": ..., ...}``."""
        return {role: s.canonical(template, per_slot) for role, s in self.roles().items()}

    @property
    def coverage(self) -> Coverage | None:
        return self.informative.coverage
