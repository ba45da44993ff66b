"""Weight changes from what users have: a finetuned checkpoint on disk, or a PEFT LoRA adapter.

Both read safetensors files tensor by tensor (``safe_open``), so a finetuned checkpoint is never
loaded as a second model: at any time memory holds the base model, the delta built so far and one
checkpoint tensor. Names are ``named_parameters(model)`` names (Hugging Face names), which is what
``save_pretrained`` writes and what PEFT's module paths end in.

LoRA merging follows PEFT's ``merge_and_unload``: for every target module,
``Delta W = scale * B @ A`` with ``scale = lora_alpha / r`` (``alpha / sqrt(r)`` with
``use_rslora``), per-module ``r`` and ``alpha`` from ``rank_pattern`` / ``alpha_pattern``, and the
result transposed for ``fan_in_fan_out`` layers (GPT-2's ``Conv1D`` stores ``(in, out)``).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.models import model_identity, named_parameters

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."


def checkpoint_shards(directory: str | os.PathLike) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it, for a ``save_pretrained`` directory
    (one ``model.safetensors``, or shards listed in ``model.safetensors.index.json``)."""
    from safetensors import safe_open

    d = Path(directory)
    if (d / INDEX).is_file():
        weight_map = json.loads((d / INDEX).read_text())["weight_map"]
        return {name: d / file for name, file in weight_map.items()}
    if (d / SINGLE).is_file():
        with safe_open(str(d / SINGLE), framework="pt") as f:
            return dict.fromkeys(f.keys(), d / SINGLE)
    found = sorted(p.name for p in d.iterdir()) if d.is_dir() else "no such directory"
    raise FileNotFoundError(
        f"{d} holds no {SINGLE} or {INDEX} (found: {found}); save the finetuned model with "
        "model.save_pretrained(dir) (safetensors, the default) or extractive_lens.save_model"
    )


def read_tensors(
    directory: str | os.PathLike, names: Iterable[str]
) -> Iterator[tuple[str, Tensor]]:
    """``(name, tensor)`` for each name, read one at a time from the checkpoint's shards (each
    shard opened once, memory-mapped). Raises ``KeyError`` naming missing tensors first."""
    from safetensors import safe_open

    shards = checkpoint_shards(directory)
    names = list(names)
    missing = [n for n in names if n not in shards]
    if missing:
        raise KeyError(
            f"{directory} has no tensors {missing[:5]} ({len(missing)} missing); is it a "
            f"checkpoint of the same architecture? It holds e.g. {sorted(shards)[:3]}"
        )
    by_file: dict[Path, list[str]] = {}
    for n in names:
        by_file.setdefault(shards[n], []).append(n)
    for file, in_file in by_file.items():
        with safe_open(str(file), framework="pt") as f:
            for n in in_file:
                yield n, f.get_tensor(n)


def checkpoint_minus(
    params: dict[str, torch.nn.Parameter],
    directory: str | os.PathLike,
    *,
    names: Iterable[str] | None = None,
    sign: float = 1.0,
    skip_unchanged: bool = True,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor]:
    """``sign * (checkpoint - params)`` in fp32, tensor by tensor (``names``: default all).

    ``skip_unchanged`` leaves out tensors equal to the model's (e.g. everything but the block
    linear weights after the paper's recipe), so the delta holds only what training changed.
    """
    names = list(params if names is None else names)
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(f"the model has no parameters named {unknown[:5]}")
    out: dict[str, Tensor] = {}
    for n, stored in read_tensors(directory, names):
        p = params[n]
        if stored.shape != p.shape:
            raise ValueError(
                f"{n}: checkpoint {tuple(stored.shape)} vs model {tuple(p.shape)}; "
                f"{directory} is not a finetune of this model"
            )
        diff = stored.to(device=p.device, dtype=torch.float32) - p.detach().float()
        if skip_unchanged and not diff.any():
            continue
        out[n] = (sign * diff).to(device)
    return out


# --------------------------------------------------------------------------------------- LoRA


def difference(
    before: Mapping[str, Tensor] | TransformerBridge | str | os.PathLike,
    after: TransformerBridge | str | os.PathLike,
    names: Iterable[str] | None,
    skip_unchanged: bool | None,
    device: str | torch.device,
) -> tuple[dict[str, Tensor], dict[str, Any], TransformerBridge]:
    """``WeightDelta.between``'s tensors, the identity of the delta's base and the loaded model."""
    model = after if isinstance(after, TransformerBridge) else before
    if not isinstance(model, TransformerBridge):
        raise TypeError(
            "between: one side must be a loaded model (TransformerBridge); got "
            f"{type(before).__name__} and {type(after).__name__}"
        )
    identity = model_identity(model)
    if model is after:  # its weights are the finetuned ones, not the delta's base
        identity.pop("fingerprint")
    params = named_parameters(model)
    if isinstance(after, str | os.PathLike) or isinstance(before, str | os.PathLike):
        path = after if isinstance(after, str | os.PathLike) else before
        sign = 1.0 if path is after else -1.0
        skip = skip_unchanged is not False
        tensors = checkpoint_minus(
            params, path, names=names, sign=sign, skip_unchanged=skip, device=device
        )
        return tensors, identity, model
    if isinstance(before, TransformerBridge):
        identity = model_identity(before)
        old = named_parameters(before)
        before = {n: old[n] for n in (old if names is None else names) if n in old}
        skip = skip_unchanged is not False
    else:  # a snapshot keeps all of its names unless asked
        before = {n: before[n] for n in (before if names is None else names)}
        skip = bool(skip_unchanged)
    return weights_minus(params, before, skip_unchanged=skip, device=device), identity, model


def weights_minus(
    params: dict[str, Tensor],
    before: dict[str, Tensor],
    *,
    skip_unchanged: bool,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor]:
    """``params[n] - before[n]`` in fp32 for every name of ``before`` (in its order), on
    ``device``; with ``skip_unchanged``, tensors that did not change are left out."""
    missing = [n for n in before if n not in params]
    if missing:
        raise ValueError(f"between: the model has no parameters named {missing[:5]}")
    out = {}
    for n, b in before.items():
        diff = params[n].detach().float() - b.detach().to(params[n].device).float()
        if not (skip_unchanged and not diff.any()):
            out[n] = diff.to(device)
    return out


def _pattern_value(pattern: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's ``rank_pattern`` / ``alpha_pattern`` lookup: a key matches a module path suffix."""
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def lora_scale(config: dict[str, Any], module: str) -> tuple[int, float]:
    """``(r, scale)`` of one target module under an ``adapter_config.json``."""
    r = int(_pattern_value(config.get("rank_pattern") or {}, module, config["r"]))
    alpha = float(_pattern_value(config.get("alpha_pattern") or {}, module, config["lora_alpha"]))
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    return r, scale


def read_adapter_config(adapter_dir: str | os.PathLike) -> dict[str, Any]:
    """The adapter's config, refused with the reason when it is not a plain LoRA we can merge."""
    d = Path(adapter_dir)
    if not (d / ADAPTER_CONFIG).is_file() or not (d / ADAPTER_WEIGHTS).is_file():
        raise FileNotFoundError(
            f"{d} needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} (PEFT's save_pretrained with "
            "safe_serialization, the default); a .bin adapter is pickle and is not read"
        )
    config = json.loads((d / ADAPTER_CONFIG).read_text())
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{d}: peft_type {config.get('peft_type')!r}; only LORA merges linearly")
    unsupported = {
        "use_dora": "DoRA rescales the merged weight column-wise (not a sum of B @ A)",
        "lora_bias": "the adapter trains biases of lora_B",
        "modules_to_save": "it replaces whole modules",
    }
    for key, why in unsupported.items():
        if config.get(key):
            raise ValueError(f"{d}: {key} is set; from_peft cannot merge it because {why}")
    return config


def lora_deltas(
    params: dict[str, torch.nn.Parameter], adapter_dir: str | os.PathLike
) -> dict[str, Tensor]:
    """Parameter name -> ``scale * B @ A`` (fp32, transposed for ``fan_in_fan_out``)."""
    from safetensors import safe_open

    config = read_adapter_config(adapter_dir)
    pairs: dict[str, dict[str, Tensor]] = {}
    with safe_open(str(Path(adapter_dir) / ADAPTER_WEIGHTS), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
            match = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])\.weight", key)
            if match is None:
                raise ValueError(f"{adapter_dir}: unexpected tensor {key!r} in a LoRA adapter")
            pairs.setdefault(match.group(1), {})[match.group(2)] = f.get_tensor(key).float()
    out: dict[str, Tensor] = {}
    for module, ab in pairs.items():
        name = f"{module}.weight"
        if name not in params:
            raise ValueError(
                f"LoRA target {module!r} has no weight {name!r} in the model (targets must be "
                "Linear / Conv1D layers under their Hugging Face names; GPT-2's fused c_attn is "
                "split by the bridge and not supported)"
            )
        r, scale = lora_scale(config, module)
        a, b = ab["A"], ab["B"]
        if a.shape[0] != r or b.shape[1] != r:
            raise ValueError(f"{module}: A {tuple(a.shape)}, B {tuple(b.shape)} but r = {r}")
        w = scale * (b @ a)  # (out, in), as nn.Linear stores it
        if config.get("fan_in_fan_out"):
            w = w.T
        if w.shape != params[name].shape:
            raise ValueError(
                f"{name}: merged LoRA {tuple(w.shape)} vs model {tuple(params[name].shape)} "
                "(fan_in_fan_out set wrongly, or an adapter of another model)"
            )
        out[name] = w.contiguous()
    return out
