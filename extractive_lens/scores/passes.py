"""Where each architecture's linear maps live in the bridge, and one hooked pass over a batch.

A *pass* runs the model once on a right-padded batch, records the values of some hook points,
optionally substitutes others, and (when asked) returns the gradient of the score target
``R = sum_i R_i`` (METHOD.md §1) at some hook points. Gradients are taken with
``torch.autograd.grad`` with respect to the hooked activations only, so no parameter gradient is
ever formed: a backward costs about one forward's worth of matrix products.

Hook points used (verified against the weights in ``tests/test_scores_hooks.py``):

- ``blocks.L.attn.{q,k,v}.hook_in`` / ``hook_out``: input and (pre-rotary) output of W_Q, W_K, W_V,
  outputs shaped ``[batch, pos, head, d_head]``;
- ``blocks.L.attn.o.hook_in`` (= ``hook_z``, the head outputs y) / ``o.hook_out``;
- ``blocks.L.mlp.{gate,in,out}.hook_in`` / ``hook_out``: W_gate, W_in (up), W_out (down);
  ``mlp.out.hook_out`` is ``hook_mlp_out``, the MLP's output y;
- ``blocks.L.ln2.hook_normalized`` / ``hook_out``: the MLP's norm before / after its weight;
- ``blocks.L.ln1.hook_out`` (what every head reads) and ``blocks.L.ln2.hook_in`` (what the MLP's
  norm reads; substituting it leaves the residual stream alone).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.components import check_supported
from extractive_lens.metrics import Batch, last_prompt_logits, model_device

Owner = Literal["heads", "kv_heads", "mlp"]
Split = Literal["out", "in", "none", "diag"]


@dataclass(frozen=True)
class LinearMap:
    """One linear map ``u -> W u (+ b)`` inside a component, as the bridge exposes it.

    Attributes:
        role: ``q``, ``k``, ``v``, ``o``, ``gate``, ``up``, ``down`` or ``norm``.
        weight: the weight's ``named_parameters`` name.
        bias: the bias's name when the component owns one, else None.
        transposed: True when stored ``[in, out]`` (GPT-2's Conv1D), False for ``nn.Linear``.
        u_hook: hook holding the map's input u.
        d_hook: hook whose gradient is the loss gradient at the map's output.
        split: how heads share the map: by output rows (``out``: q/k/v), by input columns
            (``in``: o), not at all (``none``: MLP weights) or elementwise (``diag``: norms).
        owner: which score tensor its terms land in.
    """

    role: str
    weight: str
    bias: str | None
    transposed: bool
    u_hook: str
    d_hook: str
    split: Split
    owner: Owner


@dataclass(frozen=True)
class ModelSpec:
    """Shapes and per-layer linear maps of a supported model."""

    arch: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    maps: tuple[tuple[LinearMap, ...], ...]

    @property
    def gqa(self) -> bool:
        return self.n_kv_heads != self.n_heads


# (role, weight under the layer prefix, bias or None, stored [in, out]?, hook base, split, owner)
_GPT2 = (
    *((r, f"attn.{r}.weight", f"attn.{r}.bias", False, f"attn.{r}", "out", "heads") for r in "qkv"),
    ("o", "attn.o.weight", None, True, "attn.o", "in", "heads"),
    ("norm", "ln_2.weight", "ln_2.bias", False, "ln2", "diag", "mlp"),
    ("up", "mlp.c_fc.weight", "mlp.c_fc.bias", True, "mlp.in", "none", "mlp"),
    ("down", "mlp.c_proj.weight", "mlp.c_proj.bias", True, "mlp.out", "none", "mlp"),
)
_LLAMA = (
    *(
        (
            r,
            f"self_attn.{r}_proj.weight",
            f"self_attn.{r}_proj.bias",
            False,
            f"attn.{r}",
            "out",
            "heads" if r == "q" else "kv",
        )
        for r in "qkv"
    ),
    ("o", "self_attn.o_proj.weight", None, False, "attn.o", "in", "heads"),
    ("norm", "post_attention_layernorm.weight", None, False, "ln2", "diag", "mlp"),
    ("gate", "mlp.gate_proj.weight", "mlp.gate_proj.bias", False, "mlp.gate", "none", "mlp"),
    ("up", "mlp.up_proj.weight", "mlp.up_proj.bias", False, "mlp.in", "none", "mlp"),
    ("down", "mlp.down_proj.weight", "mlp.down_proj.bias", False, "mlp.out", "none", "mlp"),
)


def model_spec(model: TransformerBridge) -> ModelSpec:
    """The linear maps of every layer of ``model`` (Llama or GPT-2 layouts).

    A map's input is at ``<hook base>.hook_in`` and its output at ``<hook base>.hook_out``, except
    for the MLP's norm, whose "input" is the normalised residual (``ln2.hook_normalized``).
    """
    check_supported(model)
    cfg = model.cfg
    arch = str(cfg.architecture)
    n_heads = int(cfg.n_heads)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
    gpt2 = arch == "GPT2LMHeadModel"
    table, prefix = (_GPT2, "transformer.h") if gpt2 else (_LLAMA, "model.layers")
    maps = []
    for layer in range(int(cfg.n_layers)):
        p, b = f"{prefix}.{layer}.", f"blocks.{layer}."
        maps.append(
            tuple(
                LinearMap(
                    role=role,
                    weight=p + weight,
                    bias=p + bias if bias else None,
                    transposed=transposed,
                    u_hook=b + base + (".hook_normalized" if role == "norm" else ".hook_in"),
                    d_hook=b + base + ".hook_out",
                    split=split,
                    owner=("kv_heads" if n_kv != n_heads else "heads") if owner == "kv" else owner,
                )
                for role, weight, bias, transposed, base, split, owner in table
            )
        )
    return ModelSpec(arch, int(cfg.n_layers), n_heads, n_kv, int(cfg.d_head), tuple(maps))


# --------------------------------------------------------------------------- component outputs


def output_hooks(spec: ModelSpec, layer: int) -> dict[str, tuple[str, ...]]:
    """Hooks holding each component kind's output y at ``layer`` (METHOD.md §3).

    Heads: ``hook_z``; MLP: ``hook_mlp_out``; K/V heads (grouped-query attention only): the K and
    V projections' outputs, concatenated per K/V head.
    """
    b = f"blocks.{layer}."
    out = {"heads": (f"{b}attn.o.hook_in",), "mlp": (f"{b}mlp.out.hook_out",)}
    if spec.gqa:
        out["kv_heads"] = (f"{b}attn.k.hook_out", f"{b}attn.v.hook_out")
    return out


def input_hooks(layer: int) -> tuple[str, str]:
    """What the layer's components read: the heads' normalised input, the MLP's norm input."""
    return f"blocks.{layer}.ln1.hook_out", f"blocks.{layer}.ln2.hook_in"


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
    """R per example from a forward that unembeds only the last prompt positions.

    ``logits_to_keep`` makes the model skip the unembedding (the largest matrix of a small model)
    at every other position; R is unchanged.
    """
    device = model_device(model)
    keep, where = torch.unique(batch.last_prompt, sorted=True, return_inverse=True)
    logits = model(
        batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        logits_to_keep=keep.to(device),
    )
    last = logits[torch.arange(len(where), device=logits.device), where.to(logits.device)]
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
    substitute = dict(substitute or {})
    grad_set = list(dict.fromkeys(grads))
    value_set = set(values)
    kept: dict[str, Tensor] = {}
    live: dict[str, Tensor] = {}

    def make_hook(name: str):  # noqa: ANN202
        def hook(x: Tensor, hook) -> Tensor | None:  # noqa: ANN001 (TransformerLens HookPoint)
            if name in substitute:
                x = substitute[name].to(device=x.device, dtype=x.dtype)
            if name in value_set:
                kept[name] = x.detach()
            if name in live_names:
                # A fresh view puts exactly this tensor on the forward path (the bridge reverts
                # any shape conversion), so autograd can differentiate R with respect to it.
                x = x.view_as(x)
                live[name] = x
                return x
            return x if name in substitute else None

        return hook

    live_names = set(grad_set)
    names = list(dict.fromkeys([*substitute, *value_set, *grad_set]))
    need_grad = bool(grad_set or extra_grad_inputs)
    hooks = [(n, make_hook(n)) for n in names]
    with torch.set_grad_enabled(need_grad), model.hooks(fwd_hooks=hooks):
        target = target_forward(model, batch, answers, option_ids)
    missing = [n for n in value_set if n not in kept] + [n for n in grad_set if n not in live]
    if missing:
        raise RuntimeError(f"hooks did not fire: {missing[:5]}")
    grad_out: dict[str, Tensor] = {}
    extra: tuple[Tensor, ...] = ()
    if need_grad:
        inputs = [live[n] for n in grad_set] + list(extra_grad_inputs)
        got = torch.autograd.grad(target.sum(), inputs, allow_unused=True)
        for n, g, x in zip(grad_set, got, inputs, strict=False):
            grad_out[n] = torch.zeros_like(x) if g is None else g
        extra = tuple(
            torch.zeros_like(x) if g is None else g
            for g, x in zip(got[len(grad_set) :], extra_grad_inputs, strict=True)
        )
    return PassResult(kept, grad_out, target.detach()), extra
