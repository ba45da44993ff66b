"""The batched driver: all three scores from about 3 forwards + 2 backwards per batch.

Per batch of items:

1. forward + backward under theta: each linear map's input and output gradient (informative),
   the components' outputs y and dR/dy (downstream, upstream);
2. forward (+ backward if upstream) under theta' = theta + delta: the components' inputs z'
   (downstream) and dR'/dy (upstream);
3. forward under theta with every component's input replaced by z' (downstream's y~).

Counterfactual activations are theta-activations of other items, already computed in pass 1.
Dot products are accumulated in fp32 whatever the model's dtype.

Peak memory is bounded by the batch: theta' is computed by ``WeightDelta.hooked`` (each linear
layer runs with ``W + Delta W`` formed for that call, never a second copy of the touched weights),
and what the upstream score needs across batches (each item's y and dR'/dy - dR/dy) waits in an
:class:`.upstream.ItemPool` (host memory up to a small budget, then a temporary file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import first_token_ids, validate
from extractive_lens.delta import WeightDelta
from extractive_lens.metrics import (
    ExampleLike,
    answer_index,
    as_examples,
    model_device,
    prompt_batch,
    prompt_ids,
)
from extractive_lens.models import named_parameters
from extractive_lens.scores.align import AlignmentError, align, sample_counterfactuals
from extractive_lens.scores.downstream import downstream_batch, substitution_hooks
from extractive_lens.scores.informative import (
    active_maps,
    coverage_of,
    informative_batch,
)
from extractive_lens.scores.passes import (
    ModelSpec,
    acc,
    accumulation_dtype,
    all_output_hooks,
    model_spec,
    run_pass,
    stack_outputs,
)
from extractive_lens.scores.result import ComponentScores
from extractive_lens.scores.upstream import ItemPool, pool_batch, upstream_item

ROLES = ("informative", "downstream", "upstream")


def _check_delta(model: TransformerBridge, delta: Mapping[str, Tensor]) -> WeightDelta:
    if isinstance(delta, WeightDelta):
        delta.check_compatible(model)
        return delta
    wd = WeightDelta(delta)
    wd.check_compatible(model)
    return wd


def _kinds(spec: ModelSpec) -> list[str]:
    return ["mlp", "heads", "kv_heads"] if spec.gqa else ["mlp", "heads"]


def _empty(
    spec: ModelSpec, n: int, width: int, device: Any, dtype: torch.dtype, dims: dict | None = None
) -> dict[str, Tensor]:
    dims = dims or {"mlp": (), "heads": (spec.n_heads,), "kv_heads": (spec.n_kv_heads,)}
    return {
        k: torch.zeros(n, width, spec.n_layers, *dims[k], device=device, dtype=dtype)
        for k in _kinds(spec)
    }


def compute(
    model: TransformerBridge,
    delta: Mapping[str, Tensor],
    examples: Sequence[ExampleLike],
    options: Sequence[str],
    *,
    roles: Sequence[str] = ROLES,
    counterfactuals: int | Tensor | None = 10,
    seed: int = 3,
    template: str | None = None,
    batch_size: int = 32,
    paper_mlp: bool = False,
    prepend_bos: bool | None = None,
) -> dict[str, ComponentScores]:
    """Compute the requested roles' scores; see :func:`extractive_lens.scores.extractive_scores`."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown score roles {sorted(unknown)}; choose from {ROLES}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tok = model.tokenizer
    examples = as_examples(examples)
    options = list(options)
    validate(examples, tok, options=options)
    spec = model_spec(model)
    wd = _check_delta(model, delta)
    device = model_device(model)
    dtype = accumulation_dtype(next(model.original_model.parameters()).dtype)
    n = len(examples)

    ids = [prompt_ids(tok, ex.prompt, prepend_bos) for ex in examples]
    lengths = [len(x) for x in ids]
    width = max(lengths)
    tokens = tuple(tuple(tok.decode([t]) for t in row) for row in ids)
    try:
        alignment, align_error = align(tok, examples, ids), None
    except AlignmentError as err:
        alignment, align_error = None, str(err)

    cf: Tensor | None = None
    if "upstream" in roles and counterfactuals is not None:
        if alignment is None:
            raise AlignmentError(align_error)
        if isinstance(counterfactuals, int):
            if counterfactuals > 0:
                cf = sample_counterfactuals(alignment, examples, counterfactuals, seed)
        else:
            cf = torch.as_tensor(counterfactuals, dtype=torch.long)
            if cf.ndim != 2 or cf.shape[0] != n:
                raise ValueError(f"counterfactuals must be [example, K], got {tuple(cf.shape)}")

    want_i, want_d, want_u = (r in roles for r in ROLES)
    option_ids = torch.tensor(first_token_ids(tok, options))
    answers = answer_index(examples, options)
    dd = {k: t.to(device=device, dtype=dtype) for k, t in wd.items()}
    maps = active_maps(spec, dd, paper_mlp) if want_i else []
    coverage, uncovered = coverage_of(spec, dd) if want_i else (None, [])
    out_hooks = all_output_hooks(spec) if (want_d or want_u) else []
    sub_hooks = substitution_hooks(spec) if want_d else []

    results = {r: _empty(spec, n, width, device, dtype) for r in roles}
    run = _Passes(model, spec, wd, dd, maps, uncovered, out_hooks, sub_hooks, option_ids, paper_mlp)
    pool = ItemPool() if want_u else None
    uncovered_total = 0.0
    try:
        for start in range(0, n, batch_size):
            rows = list(range(start, min(start + batch_size, n)))
            batch = prompt_batch(tok, [ids[i] for i in rows])
            uncovered_total += run.batch(batch, answers[rows], rows, lengths, results, pool)
        if pool is not None:  # one item at a time, reading its counterfactuals back
            for i in range(n):
                values = upstream_item(pool, _kinds(spec), i, lengths[i], alignment, cf, device)
                for kind, value in values.items():
                    results["upstream"][kind][i, : lengths[i]] = value
    finally:
        if pool is not None:
            pool.close()

    if coverage is not None and uncovered:
        coverage = type(coverage)(
            coverage.covered_sq_norm,
            coverage.uncovered_sq_norm,
            coverage.uncovered,
            uncovered_total,
        )
    mask = _mask(lengths, width, device, dtype)
    out = {}
    for role in roles:
        t = results[role]
        for kind in t:
            t[kind] = t[kind] * mask.view(n, width, *[1] * (t[kind].ndim - 2))
        out[role] = ComponentScores(
            role=role,
            mlp=t["mlp"].cpu(),
            heads=t["heads"].cpu(),
            kv_heads=t["kv_heads"].cpu() if "kv_heads" in t else None,
            tokens=tokens,
            examples=tuple(examples),
            alignment=alignment,
            alignment_error=align_error,
            coverage=coverage if role == "informative" else None,
            counterfactuals=cf if role == "upstream" else None,
            canonical_template=template,
            tokenizer=tok,
            prepend_bos=prepend_bos,
            parallel_blocks=spec.parallel,
        )
    return out


@dataclass
class _Passes:
    """What the three passes of every batch share (module doc)."""

    model: TransformerBridge
    spec: ModelSpec
    wd: WeightDelta
    dd: dict[str, Tensor]
    maps: list
    uncovered: list[str]
    out_hooks: list[str]
    sub_hooks: list[str]
    option_ids: Tensor
    paper_mlp: bool

    def batch(self, batch, ans, rows, lengths, results, pool) -> float:
        """Run one batch's passes, store its scores; returns its uncovered-informative part."""
        spec, model, out_hooks = self.spec, self.model, self.out_hooks
        want_i, want_d, want_u = "informative" in results, "downstream" in results, pool is not None
        b, p = batch.input_ids.shape
        # Pass 1: theta, forward + backward.
        params = named_parameters(model)
        first, extra_grads = run_pass(
            model,
            batch,
            ans,
            self.option_ids,
            values=[m.u_hook for _, m in self.maps] + out_hooks,
            grads=[m.d_hook for _, m in self.maps] + out_hooks,
            extra_grad_inputs=[params[nm] for nm in self.uncovered],
        )
        uncovered = sum(
            float((acc(g) * self.dd[nm]).sum())
            for nm, g in zip(self.uncovered, extra_grads, strict=True)
        )
        if want_i:
            scores = informative_batch(
                spec, self.dd, self.maps, first.values, first.grads, (b, p), self.paper_mlp
            )
            _store(results["informative"], scores, rows, p)
            keep = set(out_hooks)  # the linear maps' caches are done with
            first.values = {h: v for h, v in first.values.items() if h in keep}
            first.grads = {h: g for h, g in first.grads.items() if h in keep}
        # Pass 2: theta' (no weight written or kept twice: delta_apply), forward (+ backward).
        if want_d or want_u:
            with self.wd.hooked(model):
                second, _ = run_pass(
                    model,
                    batch,
                    ans,
                    self.option_ids,
                    values=self.sub_hooks,
                    grads=out_hooks if want_u else (),
                )
        # Pass 3: theta with every component's inputs from theta'.
        if want_d:
            third, _ = run_pass(
                model,
                batch,
                ans,
                self.option_ids,
                values=out_hooks,
                substitute={h: second.values.pop(h) for h in self.sub_hooks},
            )
            scores = downstream_batch(spec, first.grads, first.values, third.values)
            _store(results["downstream"], scores, rows, p)
            del third
        if want_u:
            y, dg = {}, {}
            for kind in _kinds(spec):
                y[kind] = acc(stack_outputs(spec, first.values, kind))
                dg[kind] = acc(stack_outputs(spec, second.grads, kind)) - acc(
                    stack_outputs(spec, first.grads, kind)
                )
            pool_batch(pool, rows, _trim(y, rows, lengths), _trim(dg, rows, lengths))
        return uncovered


def _trim(t: dict[str, Tensor], rows: list[int], lengths: list[int]) -> dict[str, list[Tensor]]:
    """Each item's positions only (the batch's right padding dropped)."""
    return {k: [v[b, : lengths[i]] for b, i in enumerate(rows)] for k, v in t.items()}


def _store(target: dict[str, Tensor], scores: dict[str, Tensor], rows: list[int], p: int) -> None:
    for kind, value in scores.items():
        target[kind][rows, :p] = value


def _mask(lengths: list[int], width: int, device: Any, dtype: torch.dtype) -> Tensor:
    positions = torch.arange(width, device=device)[None, :]
    return (positions < torch.tensor(lengths, device=device)[:, None]).to(dtype)
