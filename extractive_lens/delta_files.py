"""``WeightDelta`` files: safetensors (never pickle) with a JSON header.

The header carries the format tag, the model identity the delta was made for (with the weights'
fingerprint), the tensors' order and shapes, the library versions that wrote it, the user's
metadata and the parameter -> block index map. Files are written atomically and never replace an
existing file unless asked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.models import weights_fingerprint
from extractive_lens.results import atomic_path, versions

FORMAT = "extractive_lens.WeightDelta/1"


def write(
    path: str | os.PathLike,
    tensors: Mapping[str, Tensor],
    header: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``tensors`` with ``header`` (identity, metadata, layers) and the format tag, the
    shapes in order and the library versions; refuse to replace a file unless ``overwrite``."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    meta = {
        "format": FORMAT,
        "shapes": json.dumps({n: list(t.shape) for n, t in tensors.items()}),
        "versions": json.dumps(versions()),
        **{k: json.dumps(v) for k, v in header.items()},
    }
    data = {n: t.detach().cpu().contiguous() for n, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata=meta)
    return path


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The file's tensors (in the saved order), ``dtype``, ``identity``, ``metadata``,
    ``layers`` and ``versions``; ``ValueError`` if it is not a WeightDelta file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a WeightDelta file (format {header.get('format')!r})")
    tensors = load_file(str(path))
    order = json.loads(header["shapes"])  # the saved order (safetensors sorts the names)
    return {
        "tensors": {n: tensors[n] for n in order},
        "dtype": next(iter(tensors.values())).dtype if tensors else torch.float32,
        "identity": json.loads(header["identity"]),
        "metadata": json.loads(header["metadata"]),
        "layers": json.loads(header.get("layers", "null")),
        "versions": json.loads(header.get("versions", "{}")),
    }


def check_same_weights(
    identity: Mapping[str, Any] | None, model: TransformerBridge, source: str = "the delta"
) -> None:
    """Raise ``ValueError`` unless ``model``'s weights carry the fingerprint that ``identity``
    (a delta's ``model_identity`` record) holds; records without one pass."""
    mine = (identity or {}).get("fingerprint")
    if mine is None:
        return
    theirs = weights_fingerprint(model)
    if mine != theirs:
        raise ValueError(
            f"{source} was made for weights with fingerprint {mine} "
            f"({identity.get('name', '?')}), but the model's weights have fingerprint "
            f"{theirs} ({model.cfg.model_name}): same shapes, different weights (another "
            "seed, checkpoint or finetune). A delta is only meaningful on the weights it was "
            "made from. If the model has another delta applied, load this one before applying "
            "it; to use it anyway, pass allow_other_weights=True."
        )


def same_model(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two ``model_identity`` records describe the same architecture and shapes (the keys
    both carry agree). The weights' fingerprint is not compared: deltas made on different weights
    of one model (a chain of finetunes) combine."""
    return all(a[k] == b[k] for k in (a.keys() & b.keys()) - {"fingerprint"})
