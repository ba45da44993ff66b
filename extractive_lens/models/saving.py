"""Save a bridge (or an HF model) in the Hugging Face layout that ``load_model(dir)`` reloads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.models.parameters import _WRAPPER, named_parameters


def save_model(model: Any, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save a bridge (or an HF model with ``.tokenizer`` set) so ``load_model(dir)`` reloads it.

    ``save_pretrained`` refuses bridge-wrapped models (the bridge aliases every weight), so this
    writes the HF layout itself: ``config.json``, ``model.safetensors`` and the tokenizer.
    """
    out = Path(directory)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True to replace its files.")
    out.mkdir(parents=True, exist_ok=True)
    hf = getattr(model, "original_model", model)
    _write_hf(hf, model.tokenizer, out, _fused_from_copies(model))
    return out


def _fused_from_copies(model: Any) -> dict[int, torch.Tensor]:
    """Fused QKV tensors the bridge runs as split *copies* (GPT-NeoX, Falcon), rebuilt from those
    copies so that a trained model saves what its forward uses (keyed by the parameter's id)."""
    if not isinstance(model, TransformerBridge):
        return {}
    from extractive_lens.structure import model_structure

    params = named_parameters(model)
    out = {}
    for fused, parts in model_structure(model).fused_rows.items():
        tensor = params[fused].detach().clone()
        for split, rows in parts:
            tensor[list(rows)] = params[split].detach().to(tensor.dtype)
        out[id(params[fused])] = tensor
    return out


def _write_hf(
    hf: Any, tokenizer: Any, out: Path, replace: dict[int, torch.Tensor] | None = None
) -> None:
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        expected = set(AutoModelForCausalLM.from_config(hf.config).state_dict())
    state = {}
    # Persistent buffers are part of the state too (Apertus's xIELU keeps beta / eps there).
    tensors = [
        *hf.named_parameters(remove_duplicate=False),
        *hf.named_buffers(remove_duplicate=False),
    ]
    for name, param in tensors:
        name = name.replace(_WRAPPER, "")
        if name in expected and name not in state:
            value = (replace or {}).get(id(param), param)
            state[name] = value.detach().contiguous().clone()
    if getattr(hf.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied to the embedding; stored once
    missing = sorted(k for k in expected if k not in state and k != "lm_head.weight")
    missing = [k for k in missing if k in dict(hf.named_parameters())]
    if missing:
        raise RuntimeError(f"cannot save: parameters {missing[:5]} were not found")
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    hf.config.to_json_file(out / "config.json")
    tokenizer.save_pretrained(out)
