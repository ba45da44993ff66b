"""Downstream scores (docs/method.md §3, "strict"): D_{C,t} = <dR/dy_{C,t}, y~_{C,t} - y_{C,t}>.

y~_C = f_C(z'_C; W_C): C's output with its old weights on the inputs it receives under theta'.
All components' y~ come from one forward under theta in which every layer's component inputs are
replaced by their theta' values at once: the heads' normalised input (``ln1.hook_out``; the
attention norm is no component's) and the MLP's norm input (``ln2.hook_in``; the MLP owns its
norm). Substituting there leaves the residual stream itself alone, and since every component's
inputs are substituted, what the residual stream carries never reaches a component.

Under grouped-query attention a query head's y~ is computed with the old W_Q, W_K and W_V from the
theta' inputs (its attention reads them all); the K/V heads' own y~ are their old K and V
projections of the theta' inputs.

D equals -<g, y~ - y> with g = dL/dy, L = -R, i.e. <g, y - y~>: positive when C, with old weights,
turns the new inputs into something that raises R. It is the first-order estimate of
R[y_C <- y~_C] - R.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from extractive_lens.scores.passes import ModelSpec, acc, input_hooks, stack_outputs


def substitution_hooks(spec: ModelSpec) -> list[str]:
    """Hooks whose theta' values define every component's inputs z'."""
    return [h for layer in range(spec.n_layers) for h in input_hooks(spec, layer)]


def downstream_batch(
    spec: ModelSpec,
    grads: Mapping[str, Tensor],
    y: Mapping[str, Tensor],
    y_tilde: Mapping[str, Tensor],
) -> dict[str, Tensor]:
    """``{"mlp": [b,p,L], "heads": [b,p,L,H], "kv_heads": ...}`` from dR/dy, y and y~ (fp32)."""
    out = {}
    for kind in ("mlp", "heads", "kv_heads"):
        if kind == "kv_heads" and not spec.gqa:
            continue
        g = acc(stack_outputs(spec, grads, kind))
        diff = acc(stack_outputs(spec, y_tilde, kind)) - acc(stack_outputs(spec, y, kind))
        out[kind] = (g * diff).sum(-1)
    return out
