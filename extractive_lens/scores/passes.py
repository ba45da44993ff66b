"""Component outputs and inputs as hook points, and one hooked pass over a batch.

A *pass* (:func:`extractive_lens.hooking.hooked_run`, the library's one hooked pass) runs the
model once on a right-padded batch, records the values of some hook points, optionally
substitutes others, and (when asked) returns the gradient of the score target
``R = sum_i R_i`` (docs/method.md §1) at some hook points. Gradients are taken with
``torch.autograd.grad`` with respect to the hooked activations only, so no parameter gradient is
ever formed: a backward costs about one forward's worth of matrix products.

Hook points used, all read off the bridge by :mod:`extractive_lens.structure` (verified against
the weights for every tested family in ``tests/test_scores_hooks.py``):

- ``blocks.L.attn.{q,k,v}.hook_in`` / ``hook_out``: input and (pre-rotary) output of W_Q, W_K, W_V,
  outputs shaped ``[batch, pos, head, d_head]``;
- ``blocks.L.attn.o.hook_in`` (= ``hook_z``, the head outputs y) / ``o.hook_out``;
- ``blocks.L.mlp.{gate,in,out}.hook_in`` / ``hook_out``: W_gate, W_in (up), W_out (down);
  ``mlp.out.hook_out`` is ``hook_mlp_out``, the MLP's output y;
- ``blocks.L.ln2.hook_normalized`` / ``hook_out``: the MLP's norm before / after its weight;
- ``blocks.L.ln2_post.hook_normalized`` / ``hook_out``: the MLP's post-norm (Gemma 2/3, OLMo 2);
- ``blocks.L.ln1.hook_out`` (what every head reads) and ``blocks.L.ln2.hook_in`` (what the MLP's
  norm reads; substituting it leaves the residual stream alone); without those norms (OLMo 2; the
  MLP of Phi / GPT-J) the maps' own ``hook_in``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.hooking import hooked_run, substitution
from extractive_lens.metrics import Batch, last_prompt_forward, last_prompt_logits
from extractive_lens.structure import ModelStructure, model_structure

# Linear maps, hooks and ownership are read off the bridge: see extractive_lens.structure.
ModelSpec = ModelStructure
model_spec = model_structure


# --------------------------------------------------------------------------- component outputs


def output_hooks(spec: ModelSpec, layer: int) -> dict[str, tuple[str, ...]]:
    """Hooks holding each component kind's output y at ``layer`` (docs/method.md §3).

    Heads: ``hook_z``; MLP: ``hook_mlp_out``; K/V heads (grouped-query attention only): the K and
    V projections' outputs, concatenated per K/V head.
    """
    role = {m.role: m for m in spec.maps[layer]}
    out = {"heads": (role["o"].u_hook,), "mlp": (role["down"].d_hook,)}
    if spec.gqa:
        out["kv_heads"] = (role["k"].d_hook, role["v"].d_hook)
    return out


def input_hooks(spec: ModelSpec, layer: int) -> tuple[str, ...]:
    """What the layer's components read: the heads' input (after the shared attention norm) and
    the MLP's (before the norm it owns); see ``ModelStructure.head_inputs``."""
    return tuple(dict.fromkeys(spec.head_inputs[layer] + spec.mlp_inputs[layer]))


def stack_outputs(
    spec: ModelSpec, acts: Mapping[str, Tensor], kind: str
) -> Float[Tensor, "batch pos layer ..."]:
    """One kind's outputs over all layers: ``[b, p, L, d]`` (mlp) or ``[b, p, L, head, d]``."""
    per_layer = []
    for layer in range(spec.n_layers):
        parts = [acts[h] for h in output_hooks(spec, layer)[kind]]
        per_layer.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))
    return torch.stack(per_layer, dim=2)


def all_output_hooks(spec: ModelSpec) -> list[str]:
    return [
        h for layer in range(spec.n_layers) for hs in output_hooks(spec, layer).values() for h in hs
    ]


# --------------------------------------------------------------------------- one pass


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for fp32 / half / bf16 models, fp64 for fp64 ones."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def acc(x: Tensor) -> Tensor:
    """``x`` in its accumulation dtype."""
    return x.to(accumulation_dtype(x.dtype))


@dataclass
class PassResult:
    values: dict[str, Tensor]
    grads: dict[str, Tensor]
    target: Float[Tensor, " batch"]


def score_target(
    logits: Float[Tensor, "batch pos vocab"],
    batch: Batch,
    answers: Tensor,
    option_ids: Tensor,
) -> Float[Tensor, " batch"]:
    """R_i = logit of the answer minus the mean option logit, at the last prompt position (fp32)."""
    return _margin(last_prompt_logits(logits, batch), answers, option_ids)


def _margin(last: Tensor, answers: Tensor, option_ids: Tensor) -> Tensor:
    last = last.to(accumulation_dtype(last.dtype))
    opts = last[:, option_ids.to(last.device)]
    return opts.gather(1, answers.to(last.device)[:, None]).squeeze(1) - opts.mean(1)


def target_forward(
    model: TransformerBridge, batch: Batch, answers: Tensor, option_ids: Tensor
) -> Tensor:
    """R per example from a forward that unembeds only the last prompt positions
    (``metrics.last_prompt_forward``; R is unchanged)."""
    last = last_prompt_forward(model, batch)
    return _margin(last, answers, option_ids)


def run_pass(
    model: TransformerBridge,
    batch: Batch,
    answers: Tensor,
    option_ids: Tensor,
    *,
    values: Iterable[str] = (),
    grads: Sequence[str] = (),
    substitute: Mapping[str, Tensor] | None = None,
    extra_grad_inputs: Sequence[Tensor] = (),
) -> tuple[PassResult, tuple[Tensor, ...]]:
    """One forward (and, if ``grads``, one backward of ``sum_i R_i``) of ``model`` on ``batch``.

    Args:
        values: hooks whose (detached) values to keep.
        grads: hooks at which to return dR/d(activation).
        substitute: hook -> tensor replacing that hook's value.
        extra_grad_inputs: further tensors (e.g. parameters) to differentiate R against.

    Returns:
        The pass's values, gradients and R per example; and the gradients for
        ``extra_grad_inputs``.
    """
    grad_set = list(dict.fromkeys(grads))
    edits = {n: substitution(v) for n, v in (substitute or {}).items()}
    need_grad = bool(grad_set or extra_grad_inputs)
    with (
        torch.set_grad_enabled(need_grad),
        hooked_run(model, keep=values, edit=edits, live=grad_set) as capture,
    ):
        target = target_forward(model, batch, answers, option_ids)
    grad_out: dict[str, Tensor] = {}
    extra: tuple[Tensor, ...] = ()
    if need_grad:
        inputs = [capture.live[n] for n in grad_set] + list(extra_grad_inputs)
        got = torch.autograd.grad(target.sum(), inputs, allow_unused=True)
        got = [torch.zeros_like(x) if g is None else g for g, x in zip(got, inputs, strict=True)]
        grad_out = dict(zip(grad_set, got, strict=False))
        extra = tuple(got[len(grad_set) :])
    b, p = batch.input_ids.shape
    kept = {n: _tokens_first(v, b, p) for n, v in capture.values.items()}
    grad_out = {n: _tokens_first(g, b, p) for n, g in grad_out.items()}
    return PassResult(kept, grad_out, target.detach()), extra


def _tokens_first(x: Tensor, b: int, p: int) -> Tensor:
    """``[batch * pos, d]`` -> ``[batch, pos, d]``: some MLPs (OPT) flatten the tokens."""
    return x.view(b, p, -1) if x.ndim == 2 and x.shape[0] == b * p else x
