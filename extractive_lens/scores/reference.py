"""A slow, per-example reference of the three scores, structured like the paper's code.

For every (item, counterfactual) pair it runs, at batch size 1, about five forward+backward
passes, as the published implementation does: informative (recomputed per pair, with parameter
gradients formed as ``loss.backward()`` would), theta (y, dR/dy), theta' (z', dR'/dy), theta with
z' substituted (y~; the paper's code also back-propagates there) and the counterfactual item (y*).
Gradients are read with TransformerLens backward hooks, a different mechanism from the batched
engine's. It exists to check the batched scores and to time them against (``benchmarks/``); use
:func:`extractive_lens.scores.extractive_scores` for real work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import first_token_ids
from extractive_lens.delta import WeightDelta
from extractive_lens.metrics import (
    ExampleLike,
    answer_index,
    as_examples,
    encode,
    forward,
    model_device,
    prompt_ids,
)
from extractive_lens.models import named_parameters
from extractive_lens.scores.align import align, sample_counterfactuals
from extractive_lens.scores.downstream import substitution_hooks
from extractive_lens.scores.informative import active_maps, map_terms
from extractive_lens.scores.passes import (
    ModelSpec,
    all_output_hooks,
    model_spec,
    score_target,
    stack_outputs,
)

Scores = dict[str, Tensor]


def _pass(
    model: TransformerBridge,
    batch,  # noqa: ANN001
    answer: Tensor,
    option_ids: Tensor,
    values: Sequence[str],
    grads: Sequence[str],
    substitute: Mapping[str, Tensor] | None = None,
    backward: bool = True,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Forward (+ backward with parameter gradients) with TransformerLens fwd / bwd hooks."""
    fwd_cache: dict[str, Tensor] = {}
    bwd_cache: dict[str, Tensor] = {}
    substitute = dict(substitute or {})

    def fwd(name: str):  # noqa: ANN202
        def hook(x: Tensor, hook) -> Tensor | None:  # noqa: ANN001
            if name in substitute:
                x = substitute[name]
            if name in values:
                fwd_cache[name] = x.detach().clone()
            return x if name in substitute else None

        return hook

    def bwd(name: str):  # noqa: ANN202
        def hook(g: Tensor, hook) -> None:  # noqa: ANN001
            bwd_cache[name] = g.detach().clone()

        return hook

    names = list(dict.fromkeys([*values, *substitute]))
    with (
        model.hooks(
            fwd_hooks=[(n, fwd(n)) for n in names],
            bwd_hooks=[(n, bwd(n)) for n in grads] if backward else [],
        ),
        torch.set_grad_enabled(backward),
    ):
        r = score_target(forward(model, batch), batch, answer, option_ids)
        if backward:
            params = [p for p in named_parameters(model).values() if p.requires_grad]
            torch.autograd.grad(r.sum(), params, allow_unused=True)
    return fwd_cache, bwd_cache


def _informative(
    model: TransformerBridge,
    spec: ModelSpec,
    delta: Mapping[str, Tensor],
    batch,
    answer,  # noqa: ANN001
    option_ids: Tensor,
) -> Scores:
    maps = active_maps(spec, delta)
    values, grads = _pass(
        model, batch, answer, option_ids, [m.u_hook for _, m in maps], [m.d_hook for _, m in maps]
    )
    p = batch.input_ids.shape[1]
    out = _zeros(spec, p, batch.input_ids.device)
    for layer, m in maps:
        terms = map_terms(
            m,
            values[m.u_hook],
            grads[m.d_hook],
            delta.get(m.weight),
            delta.get(m.bias) if m.bias else None,
        )[0]
        out[m.owner][:, layer] += terms
    return out


def _zeros(spec: ModelSpec, p: int, device: torch.device | str = "cpu") -> Scores:
    out = {
        "mlp": torch.zeros(p, spec.n_layers, device=device),
        "heads": torch.zeros(p, spec.n_layers, spec.n_heads, device=device),
    }
    if spec.gqa:
        out["kv_heads"] = torch.zeros(p, spec.n_layers, spec.n_kv_heads, device=device)
    return out


def reference_scores(
    model: TransformerBridge,
    delta: Mapping[str, Tensor],
    examples: Sequence[ExampleLike],
    options: Sequence[str],
    *,
    counterfactuals: int | Tensor = 10,
    seed: int = 3,
    first: int | None = None,
) -> dict[str, list[Scores]]:
    """Per item: ``{"informative"|"downstream"|"upstream": [{kind: [pos, layer, (head)]}, ...]}``,
    averaged over the item's counterfactual pairs (fp32 models). ``first``: score only the first
    items (counterfactuals still come from all)."""
    tok = model.tokenizer
    examples = as_examples(examples)
    spec = model_spec(model)
    wd = delta if isinstance(delta, WeightDelta) else WeightDelta(delta)
    device = model_device(model)
    dd = {k: v.to(device=device, dtype=torch.float32) for k, v in wd.items()}
    ids = [prompt_ids(tok, e.prompt) for e in examples]
    alignment = align(tok, examples, ids)
    cf = (
        sample_counterfactuals(alignment, examples, counterfactuals, seed)
        if isinstance(counterfactuals, int)
        else torch.as_tensor(counterfactuals)
    )
    option_ids = torch.tensor(first_token_ids(tok, options))
    answers = answer_index(examples, options)
    outs = all_output_hooks(spec)
    subs = substitution_hooks(spec)
    kinds = ["mlp", "heads", "kv_heads"] if spec.gqa else ["mlp", "heads"]
    result: dict[str, list[Scores]] = {"informative": [], "downstream": [], "upstream": []}
    for i, ex in enumerate(examples[:first]):
        batch = encode(tok, [ex], with_answers=False)
        a = answers[i : i + 1]
        p = batch.input_ids.shape[1]
        acc = {r: _zeros(spec, p, device) for r in result}
        pairs = cf[i].tolist()
        for j in pairs:
            info = _informative(model, spec, dd, batch, a, option_ids)
            y, g = _pass(model, batch, a, option_ids, outs, outs)
            with wd.applied(model):
                z, g2 = _pass(model, batch, a, option_ids, subs, outs)
            y_t, _ = _pass(model, batch, a, option_ids, outs, outs, substitute=z)
            cf_batch = encode(tok, [examples[j]], with_answers=False)
            y_cf, _ = _pass(model, cf_batch, answers[j : j + 1], option_ids, outs, outs)
            index = alignment.counterfactual_positions(i, j, p)
            for kind in kinds:
                ys = stack_outputs(spec, y, kind)[0].float()
                gs = stack_outputs(spec, g, kind)[0].float()
                acc["informative"][kind] += info[kind]
                acc["downstream"][kind] += (
                    gs * (stack_outputs(spec, y_t, kind)[0].float() - ys)
                ).sum(-1)
                dg = stack_outputs(spec, g2, kind)[0].float() - gs
                star = stack_outputs(spec, y_cf, kind)[0].float()[index]
                acc["upstream"][kind] += (dg * (ys - star)).sum(-1)
        for role in result:
            result[role].append({k: v / len(pairs) for k, v in acc[role].items()})
    return result
