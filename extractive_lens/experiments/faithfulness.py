"""Faithfulness: informative scores per (component, position) against the exact intervention.

The informative score of component C at token position t is the first-order change of R when C
gets its finetuned weights at position t only (docs/method.md §3): each of C's linear maps u -> W u
contributes <dR/d out_t, Delta W_C u_t>, with q / o / MLP terms on the query position and k / v
terms on the key position. The **exact intervention** for the same cell runs the model at theta
and, for each of C's linear maps, adds Delta W_C u_t (+ Delta b) to the map's output at position t
only, where u_t is the map's input *in that run* (so an MLP's down projection reads the changed
hidden layer: at t the MLP computes exactly f_C(u_t; theta'_C)). Everything else, other
positions and other components, keeps theta. Its effect is R(patched) - R(theta), whose
first-order term is exactly the informative score; where R is linear in the changed outputs
(e.g. a delta on the last W_out with a linear final norm) the two are equal.

A *cell* is (component, canonical position): on items of one template, the positions of every
item that map to one canonical position (docs/method.md §3) are patched together and the effect is
averaged over items, exactly as the canonical score is. :func:`faithfulness` checks the ``top_k``
cells with the largest |score| and ``n_random`` further cells drawn at random (seeded), and
reports Spearman rank correlation and sign agreement between score and exact effect, overall
and for each group. Cost: one informative pass (forward + backward; ``steps`` of them for the
integrated score) plus one forward of the items per cell, and one at theta.

>>> from extractive_lens import tiny_model, first_hop
>>> from extractive_lens.hooking import hooked_run
from extractive_lens.experiments.faithfulness import faithfulness
>>> from extractive_lens.training import finetune
>>> model, ds = tiny_model(), first_hop(n_people=6)
>>> delta = finetune(model, ds.facts, lr=3e-3, epochs=1, progress=False).delta
>>> result = faithfulness(model, delta, ds.implications, ds.implication_options, top_k=4,
...                       n_random=4)
>>> len(result.cells)
8
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.components import Component
from extractive_lens.data import first_token_ids
from extractive_lens.delta import WeightDelta
from extractive_lens.experiments.protocol import ResultMixin
from extractive_lens.experiments.settings import FaithfulnessConfig
from extractive_lens.hooking import Capture, hooked_run
from extractive_lens.metrics import ExampleLike, answer_index, as_examples, encode
from extractive_lens.models import model_identity
from extractive_lens.results import prepare_output_dir, provenance, write_json
from extractive_lens.scores import informative_scores
from extractive_lens.scores.align import AlignmentError, canonical_layout
from extractive_lens.scores.passes import acc, model_spec, target_forward
from extractive_lens.structure import LinearMap


@dataclass(frozen=True)
class Cell:
    """One checked (component, canonical position): its score and its exact effect (both the
    mean over items of the change of R), and how it was picked (``top`` or ``random``)."""

    component: str
    position: int
    token: str
    score: float
    exact: float
    group: str


@dataclass(frozen=True)
class FaithfulnessResult(ResultMixin):
    """What :func:`faithfulness` measured.

    Attributes:
        model: the model's identity.
        config: top_k, n_random, seed, steps (None = first-order score), items.
        cells: every checked cell.
        passes: model passes spent: ``{"forward+backward": ..., "forward": ...}``.
        seconds: wall time.
    """

    model: dict[str, Any]
    config: dict[str, Any]
    cells: tuple[Cell, ...]
    passes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def stats(self, group: str | None = None) -> dict[str, float]:
        """Spearman rank correlation, sign agreement and cell count (``group``: top / random)."""
        cells = [c for c in self.cells if group is None or c.group == group]
        scores, exact = [c.score for c in cells], [c.exact for c in cells]
        signs = [(s > 0) == (e > 0) for s, e in zip(scores, exact, strict=True) if s != 0 or e != 0]
        return {
            "cells": len(cells),
            "spearman": spearman(scores, exact),
            "sign_agreement": sum(signs) / len(signs) if signs else math.nan,
        }

    def table(self) -> list[dict[str, Any]]:
        """One row per group (top-k, random, all)."""
        rows = []
        for group, label in (
            ("top", f"top {self.config['top_k']}"),
            ("random", "random"),
            (None, "all"),
        ):
            rows.append({"group": label, **self.stats(group)})
        return rows

    def summary(self) -> dict[str, float]:
        out = {}
        for group, key in (("top", "top"), ("random", "random"), (None, "all")):
            for name, value in self.stats(group).items():
                out[f"{key}/{name}"] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": "faithfulness",
            **provenance(),
            "model": self.model,
            "config": self.config,
            "table": self.table(),
            "cells": [c.__dict__ for c in self.cells],
            "passes": self.passes,
            "seconds": self.seconds,
        }

    def figure(self) -> Any:
        """Exact effect (y) against informative score (x) of every checked cell, with r²."""
        from extractive_lens.experiments.figures import scatter_fit_figure

        panels = {
            group: (
                [c.score for c in self.cells if c.group == group],
                [c.exact for c in self.cells if c.group == group],
                [f"{c.component} @ {c.token!r}" for c in self.cells if c.group == group],
            )
            for group in ("top", "random")
        }
        return scatter_fit_figure(
            panels,
            x_title="informative score",
            y_title="exact intervention",
            title=f"Faithfulness on {self.model.get('name')}",
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaithfulnessResult:
        """The result ``to_dict`` described (its cells rebuilt)."""
        return super().from_dict({**data, "cells": [Cell(**c) for c in data["cells"]]})

    def save(self, out_dir: str | Path, overwrite: bool = False) -> Path:
        """Write ``results.json`` into ``out_dir``."""
        out = prepare_output_dir(out_dir, overwrite=overwrite)
        write_json(out / "results.json", self.to_dict())
        return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with < 2 points or no spread."""
    if len(x) < 2:
        return math.nan
    rx, ry = (
        _ranks(torch.tensor(x, dtype=torch.float64)),
        _ranks(torch.tensor(y, dtype=torch.float64)),
    )
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / denom if denom > 0 else math.nan


def _ranks(v: Tensor) -> Tensor:
    order = v.argsort()
    ranks = torch.empty_like(v)
    ranks[order] = torch.arange(len(v), dtype=v.dtype)
    for value in v.unique():  # average ranks over ties
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def faithfulness(
    model: TransformerBridge,
    delta: Mapping[str, Tensor],
    examples: Sequence[ExampleLike],
    options: Sequence[str],
    *,
    config: FaithfulnessConfig | None = None,
    **overrides: Any,
) -> FaithfulnessResult:
    """Compare each checked cell's informative score with its exact intervention (module doc).

    Args:
        model: the model at theta (weights unchanged afterwards).
        delta: theta' - theta.
        examples: items of one template (their positions are aligned onto canonical positions).
        options: the option set R is measured against.
        config: :class:`FaithfulnessConfig` (keywords override single fields): check the
            ``top_k`` cells with the largest |score| and ``n_random`` further ones drawn
            uniformly (seeded by ``seed``); ``steps``: None for the first-order score, m for
            the integrated one.
    """
    start = time.perf_counter()
    c = FaithfulnessConfig.build(config, overrides, "faithfulness")
    examples = as_examples(examples)
    wd = delta if isinstance(delta, WeightDelta) else WeightDelta(dict(delta))
    scores = informative_scores(
        model, wd, examples, options, batch_size=c.batch_size, steps=c.steps
    )
    if scores.alignment is None:
        raise AlignmentError(
            f"faithfulness needs items of one template with entities: {scores.alignment_error}"
        )
    canon = scores.canonical()
    entries = canon.entries()
    slots, _ = canonical_layout(model.tokenizer, scores.alignment, None, scores.prepend_bos)
    canonical_index = [
        scores.alignment.canonical_positions(i, n, slots) for i, n in enumerate(scores.lengths)
    ]
    patcher = _Patcher(model, wd, examples, options, c.batch_size)
    cells = []
    for group, indices in _pick(entries, c).items():
        for i in indices:
            comp, pos, value = entries[i]
            exact = patcher.effect(comp, [(idx == pos) for idx in canonical_index])
            cells.append(Cell(str(comp), pos, canon.labels[pos], value, exact, group))
    record = {
        "top_k": c.top_k,
        "n_random": c.n_random,
        "seed": c.seed,
        "steps": c.steps,
        "n_items": len(examples),
        "template": canon.template,
    }
    passes = {"forward+backward": c.steps or 1, "forward": patcher.forwards + (2 if c.steps else 0)}
    return FaithfulnessResult(
        model_identity(model), record, tuple(cells), passes, time.perf_counter() - start
    )


def _pick(entries: Sequence[tuple[Any, int, float]], c: FaithfulnessConfig) -> dict[str, list]:
    """The cells to check: the ``top_k`` largest |score|, then ``n_random`` of the rest drawn
    with ``seed``."""
    ranked = sorted(range(len(entries)), key=lambda i: -abs(entries[i][2]))
    rest = ranked[c.top_k :]
    return {
        "top": ranked[: c.top_k],
        "random": random.Random(c.seed).sample(rest, min(c.n_random, len(rest))),
    }


class _Patcher:
    """Exact single-cell interventions: R(patched) - R(theta), mean over items."""

    def __init__(self, model, delta, examples, options, batch_size) -> None:  # noqa: ANN001
        self.model, self.delta, self.batch_size = model, delta, batch_size
        self.spec = model_spec(model)
        self.examples = examples
        self.option_ids = torch.tensor(first_token_ids(model.tokenizer, options))
        self.answers = answer_index(examples, options)
        self.forwards = 1
        self.base = self._targets(None, None)

    def _targets(self, comp: Component | None, masks: list[Tensor] | None) -> Tensor:
        changes = [] if comp is None else self._changes(comp)
        out = []
        for start in range(0, len(self.examples), self.batch_size):
            rows = list(range(start, min(start + self.batch_size, len(self.examples))))
            batch = encode(
                self.model.tokenizer, [self.examples[i] for i in rows], with_answers=False
            )
            mask = torch.zeros(len(rows), batch.input_ids.shape[1])
            for row, i in enumerate(rows if masks is not None else ()):
                mask[row, : len(masks[i])] = masks[i].float()
            capture = Capture()  # the edit at a map's output reads its input, kept just before

            def added(m: LinearMap, dw, db, mask=mask, capture=capture):  # noqa: ANN001, ANN202
                def edit(x: Tensor) -> Tensor:
                    change = _map_change(m, capture.values[m.u_hook], dw, db).view(x.shape)
                    where = mask.to(x.device).view(*mask.shape, *[1] * (x.ndim - 2))
                    return x + (where * change).to(x.dtype)

                return edit

            edits = {m.d_hook: added(m, dw, db) for m, dw, db in changes}
            keep = [m.u_hook for m, _, _ in changes]
            with torch.no_grad(), hooked_run(self.model, keep=keep, edit=edits, into=capture):
                target = target_forward(self.model, batch, self.answers[rows], self.option_ids)
            out.append(acc(target))
        return torch.cat(out)

    def effect(self, comp: Component, masks: list[Tensor]) -> float:
        self.forwards += 1
        return float((self._targets(comp, masks) - self.base).mean())

    def _changes(self, comp: Component) -> list[tuple[LinearMap, Tensor | None, Tensor | None]]:
        """The maps of ``comp``'s layer whose slice ``comp`` owns changes, with that slice."""
        out = []
        for m in self.spec.maps[comp.layer]:
            dw, db = _component_slice(self.spec, m, comp, self.delta)
            if dw is not None or db is not None:
                out.append((m, dw, db))
        return out


def _component_slice(
    spec, m: LinearMap, comp: Component, delta
) -> tuple[Tensor | None, Tensor | None]:  # noqa: ANN001
    """The part of the delta of map ``m`` that component ``comp`` owns (zeros elsewhere)."""
    kind = {"mlp": "mlp", "head": "heads", "kv_head": "kv_heads"}[comp.kind]
    if m.owner != kind:
        return None, None
    dw, db = delta.get(m.weight), delta.get(m.bias) if m.bias is not None else None
    if kind == "mlp":
        return dw, db
    lo, hi = comp.head * spec.d_head, (comp.head + 1) * spec.d_head
    if m.split == "out":  # rows of the head (stored [out, in]; [in, out] when transposed)
        if dw is not None:
            keep = torch.zeros_like(dw)
            if m.transposed:
                keep[:, lo:hi] = dw[:, lo:hi]
            else:
                keep[lo:hi] = dw[lo:hi]
            dw = keep
        if db is not None:
            keep_b = torch.zeros_like(db)
            keep_b[lo:hi] = db[lo:hi]
            db = keep_b
        return dw, db
    if m.split == "in" and dw is not None:  # W_O: the head's input columns
        keep = torch.zeros_like(dw)
        if m.transposed:
            keep[lo:hi] = dw[lo:hi]
        else:
            keep[:, lo:hi] = dw[:, lo:hi]
        return keep, None
    return None, None


def _map_change(m: LinearMap, u: Tensor, dw: Tensor | None, db: Tensor | None) -> Tensor:
    """Delta W u (+ Delta b) at every position, flat over the map's output features."""
    u = acc(u)
    if m.split == "in":
        u = u.flatten(-2)  # [b, p, head * d_head]
    if m.split == "diag":
        out = u * dw.to(u.dtype) if dw is not None else torch.zeros_like(u)
    elif dw is None:
        out = u.new_zeros((*u.shape[:-1], db.shape[0]))
    else:
        w = dw.to(u.dtype)
        out = u @ (w if m.transposed else w.T)
    if db is not None:
        out = out + db.to(u.dtype)
    return out
