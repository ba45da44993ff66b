"""Checks against the bridge that the structure relies on: refusals, pre-norm probe, fused copies.

Private to :mod:`extractive_lens.structure`; ``UnsupportedModelError`` is re-exported there.
"""

from __future__ import annotations

import torch
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.hooking import hooked_run
from extractive_lens.models.parameters import named_parameters


class UnsupportedModelError(ValueError):
    """The scores are not defined for this model's architecture (yet)."""


SUPPORTED = (
    "dense decoder-only transformers whose bridge exposes per block attn.q/k/v/o and "
    "mlp.in/out (gate optional): Llama, Mistral, Qwen2, Qwen3, Gemma 1-3, OLMo, OLMo 2, GPT-2, "
    "GPT-NeoX, GPT-J, Phi, Phi-3, StableLM, Granite and other bridged families of that shape"
)


def _refuse(model: TransformerBridge, family: str, reason: str) -> UnsupportedModelError:
    arch = getattr(getattr(model, "cfg", None), "architecture", type(model).__name__)
    return UnsupportedModelError(
        f"unsupported: {arch} is {'an' if family[0] in 'aeiou' else 'a'} {family} model; {reason}. "
        f"extractive_lens supports {SUPPORTED}."
    )


def refusal(model: TransformerBridge) -> UnsupportedModelError | None:
    """Why the scores are undefined for this model, or None."""
    cfg = getattr(model, "cfg", None)
    hf_cfg = getattr(getattr(model, "original_model", None), "config", None)
    if getattr(hf_cfg, "is_encoder_decoder", False) or hasattr(model, "encoder_blocks"):
        return _refuse(model, "encoder-decoder", "components are defined for one causal stack")
    blocks = getattr(model, "blocks", None)
    if blocks is None or len(blocks) == 0:
        return _refuse(model, "block-less", "the bridge exposes no transformer blocks")
    for block in blocks:
        # The bridge's own component classes name the structure (HF class names do not:
        # "SeedOssMLP" contains "ssm").
        names = {type(m).__name__.lower() for m in block.modules() if is_bridge(m)}
        experts = hasattr(
            getattr(getattr(block, "mlp", None), "original_component", None), "experts"
        )
        if experts or any("moe" in n for n in names):
            return _refuse(
                model,
                "mixture-of-experts",
                "an MLP's weights and output depend on the router, so an MLP is not one "
                "component with fixed weights",
            )
        if any("mla" in n for n in names):
            return _refuse(
                model,
                "multi-head latent attention",
                "heads share low-rank K/V projections, so per-head weight slices are undefined",
            )
        if any(k in n for n in names for k in ("ssm", "mamba", "delta", "shortconv", "rwkv")):
            return _refuse(
                model, "state-space / hybrid", "its mixer layers have no attention heads"
            )
        attn = getattr(block, "attn", None)
        if attn is None or not all(hasattr(attn, r) for r in "qkvo"):
            return _refuse(model, "non-standard attention", "blocks lack attn.q/k/v/o")
        if getattr(block, "mlp", None) is None or not hasattr(block.mlp, "out"):
            return _refuse(model, "non-standard MLP", "blocks lack mlp.in/out")
    if cfg is None:
        return _refuse(model, "unknown", "it has no TransformerLens config")
    return None


def is_bridge(module: torch.nn.Module) -> bool:
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    return isinstance(module, GeneralizedComponent)


def transposed(module: torch.nn.Module) -> bool:
    """Whether a wrapped linear stores its weight ``[in, out]`` (Conv1D), not ``[out, in]``."""
    if isinstance(module, torch.nn.Linear):
        return False
    if type(module).__name__ == "Conv1D" or hasattr(module, "nf"):
        return True
    raise UnsupportedModelError(f"unknown linear module {type(module).__name__}")


class Names:
    """Parameter -> name by identity, over ``named_parameters(model)``."""

    def __init__(self, model: TransformerBridge) -> None:
        self.params = named_parameters(model)
        self.by_id = {id(p): n for n, p in self.params.items()}

    def of(self, component: torch.nn.Module | None, attr: str, strict: bool = True) -> str | None:
        module = getattr(component, "original_component", None)
        p = getattr(module, attr, None) if module is not None else None
        if p is None or (not strict and id(p) not in self.by_id):
            return None
        if id(p) not in self.by_id:
            raise UnsupportedModelError(
                f"{type(module).__name__}.{attr} is not one of the model's named parameters"
            )
        return self.by_id[id(p)]


def pre_norms(model: TransformerBridge) -> list[dict[str, bool]]:
    """Per layer, whether ``ln1`` / ``ln2`` really are the attention's / the MLP's pre-norms.

    The bridge calls the original GPT's post-residual norms ``ln1`` / ``ln2`` too, so this is
    checked on one probe forward: a pre-norm's output is exactly what q / the MLP's W_in read.
    """
    checks = {}
    for i, block in enumerate(model.blocks):
        for norm, reader in (("ln1", "attn.q"), ("ln2", "mlp.in")):
            if getattr(block, norm, None) is not None:
                checks[(i, norm)] = (f"blocks.{i}.{norm}.hook_out", f"blocks.{i}.{reader}.hook_in")
    names = {h for pair in checks.values() for h in pair}
    device = next(model.original_model.parameters()).device
    # fork_rng: a model left in train mode must not have its dropout stream moved by the probe
    with (
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        torch.no_grad(),
        hooked_run(model, keep=names, require=False) as capture,
    ):
        model(torch.tensor([[1, 2, 3]], device=device))
    seen = capture.values
    out = [{"ln1": False, "ln2": False} for _ in model.blocks]
    for (i, norm), (produced, read) in checks.items():
        a, b = seen.get(produced), seen.get(read)
        out[i][norm] = (
            a is not None
            and b is not None
            and a.numel() == b.numel()
            and bool(torch.equal(a.reshape(b.shape), b))
        )
    return out


def inert(block: torch.nn.Module, names: Names) -> list[str]:
    """A fused QKV weight whose split q/k/v are copies, not views: the forward never reads it."""
    qkv = getattr(block.attn, "qkv", None)
    fused = [n for n in (names.of(qkv, "weight", False), names.of(qkv, "bias", False)) if n]
    if not fused:
        return []
    q = names.params[names.of(block.attn.q, "weight")]
    shares = q.untyped_storage().data_ptr() == names.params[fused[0]].untyped_storage().data_ptr()
    return [] if shares else fused


def fused_rows(
    block: torch.nn.Module, names: Names
) -> dict[str, tuple[tuple[str, tuple[int, ...]], ...]]:
    """Which rows of an inert fused QKV tensor each split copy came from.

    Found by running the adapter's own split on a fused tensor whose every row holds its index
    (in float64, so any row count is exact); the real values are put back untouched.
    """
    attn = block.attn
    fused_names = inert(block, names)
    if not fused_names or not hasattr(attn, "split_qkv_matrix"):
        return {}
    fused = attn.qkv.original_component
    saved = {a: getattr(fused, a).data for a in ("weight", "bias") if getattr(fused, a) is not None}
    out = {}
    try:
        for a, data in saved.items():
            index = torch.arange(data.shape[0], dtype=torch.float64, device=data.device)
            getattr(fused, a).data = index.view(-1, *[1] * (data.ndim - 1)).expand(data.shape)
        split = attn.split_qkv_matrix(attn.original_component)
        for a in saved:
            parts = []
            for role, lin in zip("qkv", split, strict=True):
                rows = getattr(lin, a).detach().reshape(getattr(lin, a).shape[0], -1)[:, 0]
                parts.append((names.of(getattr(attn, role), a), tuple(rows.long().tolist())))
            out[names.by_id[id(getattr(fused, a))]] = tuple(parts)
    finally:
        for a, data in saved.items():
            getattr(fused, a).data = data
    return out
