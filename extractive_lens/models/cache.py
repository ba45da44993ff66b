"""The on-disk cache of converted models: built once, checked against a manifest on every use.

Each entry is a directory under :func:`cache_dir`. A manifest records each file's size,
modification time and sha256; a cache whose files changed since it was written is re-hashed, and
one that fails the hash (or is partial) is rebuilt, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CACHE_FORMAT = 1


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


def _build_cache(target: Path, build: Callable[[Path], None], source: dict[str, Any]) -> None:
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


def _cached(name: str, build: Callable[[Path], None], source: dict[str, Any]) -> Path:
    target = cache_dir() / name
    if not cache_is_valid(target):
        if target.exists():
            warnings.warn(
                f"extractive_lens: cache {target} is incomplete or corrupt; rebuilding.",
                stacklevel=3,
            )
        _build_cache(target, build, source)
    return target
