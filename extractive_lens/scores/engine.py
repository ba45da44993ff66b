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
from extractive_lens.scores.align import (
    Alignment,
    AlignmentError,
    align,
    sample_counterfactuals,
)
from extractive_lens.scores.downstream import downstream_batch, substitution_hooks
from extractive_lens.scores.informative import (
    active_maps,
    coverage_of,
    informative_batch,
)
from extractive_lens.scores.passes import (
    ModelSpec,
    PassResult,
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
    examples = as_examples(examples)
    validate(examples, model.tokenizer, options=list(options))
    items = _Items.of(model.tokenizer, examples, prepend_bos)
    cf = None
    if "upstream" in roles and counterfactuals is not None:
        cf = _counterfactual_table(items, examples, counterfactuals, seed)
    run = _Passes.of(model, _check_delta(model, delta), roles, list(options), paper_mlp)
    results = {
        r: _empty(run.spec, len(examples), items.width, run.device, run.dtype) for r in roles
    }
    uncovered = _run_batches(run, items, examples, results, batch_size, cf)
    coverage = run.coverage
    if coverage is not None and run.uncovered:
        coverage = type(coverage)(
            coverage.covered_sq_norm, coverage.uncovered_sq_norm, coverage.uncovered, uncovered
        )
    mask = _mask(items.lengths, items.width, run.device, run.dtype)
    out = {}
    for role in roles:
        t = {k: v * mask.view(*mask.shape, *[1] * (v.ndim - 2)) for k, v in results[role].items()}
        out[role] = ComponentScores(
            role=role,
            mlp=t["mlp"].cpu(),
            heads=t["heads"].cpu(),
            kv_heads=t["kv_heads"].cpu() if "kv_heads" in t else None,
            tokens=items.tokens,
            examples=tuple(examples),
            alignment=items.alignment,
            alignment_error=items.align_error,
            coverage=coverage if role == "informative" else None,
            counterfactuals=cf if role == "upstream" else None,
            canonical_template=template,
            tokenizer=model.tokenizer,
            prepend_bos=prepend_bos,
            parallel_blocks=run.spec.parallel,
        )
    return out


@dataclass(frozen=True)
class _Items:
    """The items' prompts, tokenised once: ids, lengths, token strings and template alignment."""

    ids: list[list[int]]
    lengths: list[int]
    tokens: tuple[tuple[str, ...], ...]
    alignment: Alignment | None
    align_error: str | None

    @property
    def width(self) -> int:
        return max(self.lengths)

    @classmethod
    def of(cls, tok: Any, examples: Sequence, prepend_bos: bool | None) -> _Items:
        ids = [prompt_ids(tok, ex.prompt, prepend_bos) for ex in examples]
        tokens = tuple(tuple(tok.decode([t]) for t in row) for row in ids)
        try:
            alignment, error = align(tok, examples, ids), None
        except AlignmentError as err:
            alignment, error = None, str(err)
        return cls(ids, [len(x) for x in ids], tokens, alignment, error)


def _counterfactual_table(
    items: _Items, examples: Sequence, counterfactuals: int | Tensor, seed: int
) -> Tensor | None:
    """``[item, K]``: each item's counterfactual items, sampled (an int K) or given."""
    if items.alignment is None:
        raise AlignmentError(items.align_error)
    if isinstance(counterfactuals, int):
        if counterfactuals <= 0:
            return None
        return sample_counterfactuals(items.alignment, examples, counterfactuals, seed)
    cf = torch.as_tensor(counterfactuals, dtype=torch.long)
    if cf.ndim != 2 or cf.shape[0] != len(examples):
        raise ValueError(f"counterfactuals must be [example, K], got {tuple(cf.shape)}")
    return cf


def _run_batches(run, items, examples, results, batch_size, cf) -> float:  # noqa: ANN001
    """Every batch's passes, then upstream one item at a time (reading its counterfactuals
    back from the pool); returns the uncovered-informative total."""
    n = len(examples)
    pool = ItemPool() if "upstream" in results else None
    answers = answer_index(examples, run.options)
    uncovered = 0.0
    try:
        for start in range(0, n, batch_size):
            rows = list(range(start, min(start + batch_size, n)))
            batch = prompt_batch(run.model.tokenizer, [items.ids[i] for i in rows])
            uncovered += run.batch(batch, answers[rows], rows, items.lengths, results, pool)
        for i in range(n if pool is not None else 0):
            length = items.lengths[i]
            values = upstream_item(
                pool, _kinds(run.spec), i, length, items.alignment, cf, run.device
            )
            for kind, value in values.items():
                results["upstream"][kind][i, :length] = value
    finally:
        if pool is not None:
            pool.close()
    return uncovered


@dataclass
class _Passes:
    """What the three passes of every batch share (module doc)."""

    model: TransformerBridge
    spec: ModelSpec
    wd: WeightDelta
    dd: dict[str, Tensor]  # the delta on the model's device, in the accumulation dtype
    maps: list  # (layer, LinearMap) the delta touches (informative)
    coverage: Any  # the informative coverage report (without its uncovered part), or None
    uncovered: list[str]  # changed parameters no component map reads
    out_hooks: list[str]
    sub_hooks: list[str]
    options: list[str]
    option_ids: Tensor
    paper_mlp: bool
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def of(cls, model, wd, roles, options, paper_mlp) -> _Passes:  # noqa: ANN001
        spec = model_spec(model)
        device = model_device(model)
        dtype = accumulation_dtype(next(model.original_model.parameters()).dtype)
        want_i, want_d, want_u = (r in roles for r in ROLES)
        dd = {k: t.to(device=device, dtype=dtype) for k, t in wd.items()}
        coverage, uncovered = coverage_of(spec, dd) if want_i else (None, [])
        return cls(
            model=model,
            spec=spec,
            wd=wd,
            dd=dd,
            maps=active_maps(spec, dd, paper_mlp) if want_i else [],
            coverage=coverage,
            uncovered=uncovered,
            out_hooks=all_output_hooks(spec) if (want_d or want_u) else [],
            sub_hooks=substitution_hooks(spec) if want_d else [],
            options=options,
            option_ids=torch.tensor(first_token_ids(model.tokenizer, options)),
            paper_mlp=paper_mlp,
            device=device,
            dtype=dtype,
        )

    def batch(self, batch, ans, rows, lengths, results, pool) -> float:  # noqa: ANN001
        """Run one batch's passes, store its scores; returns its uncovered-informative part."""
        p = batch.input_ids.shape[1]
        first, uncovered = self._theta(batch, ans, results, rows)
        if "downstream" in results or pool is not None:
            # Pass 2: theta' (no weight written or kept twice: delta_apply), fwd (+ bwd).
            with self.wd.hooked(self.model):
                second, _ = run_pass(
                    self.model,
                    batch,
                    ans,
                    self.option_ids,
                    values=self.sub_hooks,
                    grads=self.out_hooks if pool is not None else (),
                )
        if "downstream" in results:
            # Pass 3: theta with every component's inputs from theta'.
            subs = {h: second.values.pop(h) for h in self.sub_hooks}
            third, _ = run_pass(
                self.model, batch, ans, self.option_ids, values=self.out_hooks, substitute=subs
            )
            scores = downstream_batch(self.spec, first.grads, first.values, third.values)
            _store(results["downstream"], scores, rows, p)
            del third
        if pool is not None:
            y, dg = {}, {}
            for kind in _kinds(self.spec):
                y[kind] = acc(stack_outputs(self.spec, first.values, kind))
                dg[kind] = acc(stack_outputs(self.spec, second.grads, kind)) - acc(
                    stack_outputs(self.spec, first.grads, kind)
                )
            pool_batch(pool, rows, _trim(y, rows, lengths), _trim(dg, rows, lengths))
        return uncovered

    def _theta(self, batch, ans, results, rows) -> tuple[PassResult, float]:  # noqa: ANN001
        """Pass 1: theta, forward + backward; stores the informative scores and keeps only the
        component outputs' values and gradients for the other passes."""
        params = named_parameters(self.model)
        first, extra_grads = run_pass(
            self.model,
            batch,
            ans,
            self.option_ids,
            values=[m.u_hook for _, m in self.maps] + self.out_hooks,
            grads=[m.d_hook for _, m in self.maps] + self.out_hooks,
            extra_grad_inputs=[params[nm] for nm in self.uncovered],
        )
        uncovered = sum(
            float((acc(g) * self.dd[nm]).sum())
            for nm, g in zip(self.uncovered, extra_grads, strict=True)
        )
        if "informative" in results:
            b, p = batch.input_ids.shape
            scores = informative_batch(
                self.spec, self.dd, self.maps, first.values, first.grads, (b, p), self.paper_mlp
            )
            _store(results["informative"], scores, rows, p)
            keep = set(self.out_hooks)  # the linear maps' caches are done with
            first.values = {h: v for h, v in first.values.items() if h in keep}
            first.grads = {h: g for h, g in first.grads.items() if h in keep}
        return first, uncovered


def _trim(t: dict[str, Tensor], rows: list[int], lengths: list[int]) -> dict[str, list[Tensor]]:
    """Each item's positions only (the batch's right padding dropped)."""
    return {k: [v[b, : lengths[i]] for b, i in enumerate(rows)] for k, v in t.items()}


def _store(target: dict[str, Tensor], scores: dict[str, Tensor], rows: list[int], p: int) -> None:
    for kind, value in scores.items():
        target[kind][rows, :p] = value


def _mask(lengths: list[int], width: int, device: Any, dtype: torch.dtype) -> Tensor:
    positions = torch.arange(width, device=device)[None, :]
    return (positions < torch.tensor(lengths, device=device)[:, None]).to(dtype)
