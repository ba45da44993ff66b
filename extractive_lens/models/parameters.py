"""A model's parameters under their Hugging Face names, and what identifies its weights.

The names key every ``WeightDelta``; the fingerprint and :func:`model_identity` go into saved
results so that they say which model they came from.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

#: The path segment the bridge inserts into wrapped modules' parameter names.
_WRAPPER = "._original_component"


def named_parameters(model: TransformerBridge) -> dict[str, torch.nn.Parameter]:
    """The model's parameters under their Hugging Face names (bridge wrapper segments removed).

    These names key every ``WeightDelta``, so deltas are portable between a bridge and the plain
    HF model it wraps.
    """
    named = [(n.replace(_WRAPPER, ""), p) for n, p in model.original_model.named_parameters()]
    # Some bridges expose views of a fused weight beside the fused weight itself (GPT-2: attn.q,
    # k, v split out of c_attn, which the forward then no longer uses). Keep the views, drop the
    # parent, so that every element is trained and counted once.
    views: dict[int, int] = {}
    for _, p in named:
        key = p.untyped_storage().data_ptr()
        views[key] = views.get(key, 0) + 1
    params: dict[str, torch.nn.Parameter] = {}
    for name, p in named:
        if p.is_meta:  # offloaded by device_map (no storage to compare): listed, never resident
            params[name] = p
            continue
        storage = p.untyped_storage()
        whole = p.numel() * p.element_size() == storage.nbytes()
        if whole and views[storage.data_ptr()] > 1:
            continue
        params[name] = p
    return params


#: Elements sampled per parameter by ``weights_fingerprint`` (evenly strided over the tensor).
FINGERPRINT_SAMPLES = 4096


def weights_fingerprint(model: TransformerBridge) -> str:
    """A short hash of the model's current weights: tells same-shaped models apart, cheaply.

    Hashes every parameter's name, shape and dtype and ``FINGERPRINT_SAMPLES`` evenly strided
    elements of it (every element of smaller tensors), so it reads a few MB whatever the model's
    size. Two models with different random draws, or a model before and after finetuning, differ;
    the same weights on another device or in another process give the same string.
    """
    digest = hashlib.blake2b(digest_size=8)
    for name, p in named_parameters(model).items():
        if p.is_meta:  # offloaded by device_map: its values are not resident, so not hashed
            digest.update(f"{name}:{tuple(p.shape)}:offloaded".encode())
            continue
        flat = p.detach().reshape(-1)
        if flat.numel() > FINGERPRINT_SAMPLES:
            step = flat.numel() // FINGERPRINT_SAMPLES
            flat = flat[::step][:FINGERPRINT_SAMPLES]
        digest.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
        digest.update(flat.cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_identity(model: TransformerBridge) -> dict[str, Any]:
    """What identifies a model in saved results: name, architecture, shapes, parameter count and
    a ``fingerprint`` of the weights (``weights_fingerprint``)."""
    cfg = model.cfg
    params = named_parameters(model)
    return {
        "name": str(cfg.model_name),
        "architecture": str(cfg.architecture),
        "n_layers": int(cfg.n_layers),
        "d_model": int(cfg.d_model),
        "n_heads": int(cfg.n_heads),
        "n_kv_heads": int(getattr(cfg, "n_key_value_heads", None) or cfg.n_heads),
        "d_mlp": int(cfg.d_mlp),
        "vocab_size": int(cfg.d_vocab),
        "n_params": int(sum(p.numel() for p in params.values())),
        "fingerprint": weights_fingerprint(model),
    }
