"""The batched driver: all three scores from about 3 forwards + 2 backwards per batch.

Per batch of items:

1. forward + backward under theta: each linear map's input and output gradient (informative),
   the components' outputs y and dR/dy (downstream, upstream);
2. forward (+ backward if upstream) under theta' = theta + delta: the components' inputs z'
   (downstream) and dR'/dy (upstream);
3. forward under theta with every component's input replaced by z' (downstream's y~).

Counterfactual activations are theta-activations of other items, already computed in pass 1.
Dot products are accumulated in fp32 whatever the model's dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    encode,
    model_device,
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
from extractive_lens.scores.upstream import upstream_scores_from_pools

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
    params = named_parameters(model)
    out_hooks = all_output_hooks(spec) if (want_d or want_u) else []
    sub_hooks = substitution_hooks(spec) if want_d else []

    results = {r: _empty(spec, n, width, device, dtype) for r in roles}
    pools: dict[str, dict[str, Tensor]] = (
        {w: _empty(spec, n, width, device, dtype, _dims(spec, model)) for w in ("y", "dg")}
        if want_u
        else {}
    )
    uncovered_total = 0.0

    for start in range(0, n, batch_size):
        rows = list(range(start, min(start + batch_size, n)))
        chunk = [examples[i] for i in rows]
        batch = encode(tok, chunk, with_answers=False, prepend_bos=prepend_bos)
        b, p = batch.input_ids.shape
        ans = answers[rows]

        # Pass 1: theta, forward + backward.
        values = [m.u_hook for _, m in maps] + out_hooks
        grads = [m.d_hook for _, m in maps] + out_hooks
        extra = [params[nm] for nm in uncovered]
        first, extra_grads = run_pass(
            model, batch, ans, option_ids, values=values, grads=grads, extra_grad_inputs=extra
        )
        for nm, g in zip(uncovered, extra_grads, strict=True):
            uncovered_total += float((acc(g) * dd[nm]).sum())
        if want_i:
            scores = informative_batch(spec, dd, maps, first.values, first.grads, (b, p), paper_mlp)
            _store(results["informative"], scores, rows, p)
            keep = set(out_hooks)  # the linear maps' caches are done with
            first.values = {h: v for h, v in first.values.items() if h in keep}
            first.grads = {h: g for h, g in first.grads.items() if h in keep}

        # Pass 2: theta', forward (+ backward for upstream).
        if want_d or want_u:
            with wd.applied(model):
                second, _ = run_pass(
                    model,
                    batch,
                    ans,
                    option_ids,
                    values=sub_hooks,
                    grads=out_hooks if want_u else (),
                )

        # Pass 3: theta with every component's inputs from theta'.
        if want_d:
            third, _ = run_pass(
                model,
                batch,
                ans,
                option_ids,
                values=out_hooks,
                substitute={h: second.values[h] for h in sub_hooks},
            )
            scores = downstream_batch(spec, first.grads, first.values, third.values)
            _store(results["downstream"], scores, rows, p)
            del third

        if want_u:
            for kind in _kinds(spec):
                pools["y"][kind][rows, :p] = acc(stack_outputs(spec, first.values, kind))
                pools["dg"][kind][rows, :p] = acc(stack_outputs(spec, second.grads, kind)) - acc(
                    stack_outputs(spec, first.grads, kind)
                )
        del first

    if want_u:
        for kind in _kinds(spec):
            mask = _mask(lengths, width, device, dtype).view(
                n, width, *[1] * (pools["y"][kind].ndim - 2)
            )
            y = pools["y"][kind] * mask
            dg = pools["dg"][kind] * mask
            results["upstream"][kind] = upstream_scores_from_pools(y, dg, lengths, alignment, cf)
        del pools

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


def _dims(spec: ModelSpec, model: TransformerBridge) -> dict[str, tuple[int, ...]]:
    """Per-item activation shapes of each component kind (K/V heads: K and V concatenated)."""
    return {
        "mlp": (int(model.cfg.d_model),),
        "heads": (spec.n_heads, spec.d_head),
        "kv_heads": (spec.n_kv_heads, 2 * spec.d_head),
    }


def _store(target: dict[str, Tensor], scores: dict[str, Tensor], rows: list[int], p: int) -> None:
    for kind, value in scores.items():
        target[kind][rows, :p] = value


def _mask(lengths: list[int], width: int, device: Any, dtype: torch.dtype) -> Tensor:
    positions = torch.arange(width, device=device)[None, :]
    return (positions < torch.tensor(lengths, device=device)[:, None]).to(dtype)
