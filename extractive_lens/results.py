"""Saving results: output directories that are never silently overwritten, and provenance.

Every saved result records the library versions, the model's identity and the seeds, so a number
in a JSON file can be traced back to what produced it. Tensors go through safetensors, never pickle.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("extractive_lens", "torch", "transformer-lens", "transformers", "numpy")


def versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on (and Python's)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(**extra: Any) -> dict[str, Any]:
    """Versions, time and host facts to store beside a result, plus anything in ``extra``."""
    return {
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "platform": platform.platform(),
        **extra,
    }


def check_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Raise ``FileExistsError`` now if ``prepare_output_dir`` would refuse ``path`` later.

    Experiments call this before any work, so a run never trains for minutes and then fails to
    save. Nothing is created or deleted.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out} already holds results; choose another directory or pass "
            "overwrite=True (CLI: --overwrite) to replace them."
        )
    return out


def prepare_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create ``path`` for new results; refuse a non-empty existing one unless ``overwrite``."""
    out = check_output_dir(path, overwrite)
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; it replaces ``path`` only when the block ends
    without error, so a crash never leaves half a file (and never removes the old one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=_jsonable))
    return Path(path)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")
