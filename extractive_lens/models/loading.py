"""``load_model``: any causal LM as a TransformerLens ``TransformerBridge``, offline.

A name is looked up among the named models first (:mod:`extractive_lens.models.named`), then as
SmolLM2 (built from its GGUF file once), a local ``save_pretrained`` directory, or a hub id (only
from the Hugging Face cache or a reachable hub; otherwise it fails at once and says how to load
from a directory).
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.models.named import ModelLoadError, named_model_loader, named_models
from extractive_lens.models.smollm2 import smollm2_dir

DEFAULT_MODEL = "smollm2-135m"
#: Model dtypes by name, for command lines and configs.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    hf_model: Any = None,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    device_map: str | dict[str, Any] | None = None,
    max_memory: dict[Any, str | int] | None = None,
    offload_folder: str | os.PathLike | None = None,
) -> TransformerBridge:
    """Load a model as a ``TransformerBridge`` in eval mode.

    Args:
        name_or_path: ``"smollm2-135m"`` (default), a named model (``"tiny"`` / ``"tiny-gpt2"``,
            ``"world-default"``: a small model pretrained on a synthetic world, or any name given
            to ``register_named_model``), a local ``save_pretrained`` directory, or a hub id
            (needs a reachable hub).
        hf_model: an already-built HF causal LM; ``tokenizer`` must come with it.
        device: e.g. ``"cpu"``, ``"cuda"``; default: the model's current device.
        dtype: e.g. ``torch.bfloat16``; default: float32.
        device_map: Hugging Face big-model loading (accelerate) for a model that does not fit
            one device: ``"auto"`` (or an explicit module -> device map) spreads the layers over
            the GPUs, then CPU, then ``offload_folder`` on disk, within ``max_memory``
            (e.g. ``{0: "70GiB", "cpu": "200GiB"}``). Only for a directory or hub id; the
            HF model is loaded first and then wrapped (the bridge refuses ``device_map``
            itself). Weights offloaded to disk work for forward passes, but a ``WeightDelta``
            cannot be applied to them: leave enough GPU/CPU memory for the trained weights.
    """
    if device_map is not None:
        if hf_model is not None or device is not None:
            raise ValueError(
                "load_model(device_map=...) places the weights itself: give a directory or hub "
                "id, not hf_model=..., and no device=..."
            )
        spread = {
            "device_map": device_map,
            "max_memory": max_memory,
            "offload_folder": None if offload_folder is None else str(offload_folder),
        }
        return _load_spread(str(name_or_path or DEFAULT_MODEL), tokenizer, dtype, spread)
    if hf_model is None:
        name = str(DEFAULT_MODEL if name_or_path is None else name_or_path)
        loader = named_model_loader(name)
        if loader is not None:
            return loader(name, device=device, dtype=dtype)
        hf_model, tokenizer = _load_hf(name, tokenizer)
    elif tokenizer is None:
        raise ValueError("load_model(hf_model=...) also needs tokenizer=... (no hub to fetch one).")
    _name_architecture(hf_model)
    hf_model = hf_model.to(dtype=dtype or torch.float32)
    if device is not None:
        hf_model = hf_model.to(device)
    return _wrap(hf_model, tokenizer)


def _load_spread(
    name: str, tokenizer: Any, dtype: torch.dtype | None, spread: dict[str, Any]
) -> TransformerBridge:
    """Big-model loading: Hugging Face places the layers (``device_map`` & co.), then the bridge
    wraps the placed model as it is."""
    hf_model, tokenizer = _load_hf(name, tokenizer, dtype=dtype or torch.float32, **spread)
    return _wrap(hf_model, tokenizer)


def _wrap(hf_model: Any, tokenizer: Any) -> TransformerBridge:
    """The bridge around an HF causal LM, with the tokenizer's own BOS convention, in eval mode."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    name = getattr(hf_model.config, "_name_or_path", "") or type(hf_model).__name__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer)
    # The bridge swaps in a copy of the tokenizer that always prepends BOS. Prompts here follow
    # the model's own convention instead (SmolLM2 and GPT-2 were trained without one), so keep
    # the original and tell TransformerLens's to_tokens the same.
    # (The public setter would re-wrap it, hence the private attribute.)
    native_bos = _prepends_bos(tokenizer)
    bridge._tokenizer = tokenizer
    bridge.cfg.default_prepend_bos = native_bos
    bridge.cfg.tokenizer_prepends_bos = native_bos
    bridge.eval()
    return bridge


def _name_architecture(hf_model: Any) -> None:
    """Record the model class in ``config.architectures`` when missing (a model built from a
    config has none, and the bridge picks its adapter from it). ``save_pretrained`` writes the
    same field, so this changes nothing else about the caller's model."""
    config = getattr(hf_model, "config", None)
    if config is not None and not getattr(config, "architectures", None):
        config.architectures = [type(hf_model).__name__]


def _prepends_bos(tokenizer: Any) -> bool:
    ids = tokenizer("a", add_special_tokens=True).input_ids
    return bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id


def _load_hf(name: str, tokenizer: Any, **load: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name.lower() in {DEFAULT_MODEL, "smollm2", "smollm2-135m-instruct"}:
        directory: str | Path = smollm2_dir()
    elif Path(name).expanduser().is_dir():
        directory = Path(name).expanduser()
    else:
        directory = _hub_snapshot(name)
    model = AutoModelForCausalLM.from_pretrained(directory, **{"dtype": torch.float32, **load})
    model.config._name_or_path = name
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    return model, tokenizer


def _hub_snapshot(name: str) -> str:
    """A local snapshot of a hub model: from the HF cache, else downloaded if the hub answers."""
    from huggingface_hub import constants, snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:
        pass
    how = (
        f"'{name}' is neither a named model ({DEFAULT_MODEL}, {', '.join(named_models())}) nor a "
        "local directory, and it is not in the Hugging Face cache. On a machine without the hub, "
        "save it elsewhere with model.save_pretrained(dir); tokenizer.save_pretrained(dir), copy "
        "dir here and call load_model(dir), or pass hf_model=..., tokenizer=...., or register a "
        "loader under that name (extractive_lens.models.register_named_model)."
    )
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(how + " (HF_HUB_OFFLINE is set.)")
    if not _hub_reachable(constants.ENDPOINT):
        raise ModelLoadError(how + f" ({constants.ENDPOINT} is unreachable.)")
    try:
        return snapshot_download(name)
    except Exception as err:  # gated, missing, or the network dropped mid-way
        raise ModelLoadError(f"Downloading '{name}' failed: {err}. " + how) from err


def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = host.partition(":")
    try:
        with socket.create_connection((host, int(port or 443)), timeout=timeout):
            return True
    except OSError:
        return False
