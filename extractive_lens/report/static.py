"""Static copies of figures (PNG, SVG, PDF, ...) through the optional ``kaleido`` package."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Formats ``save_figures`` writes (through kaleido).
STATIC_FORMATS = ("png", "svg", "pdf", "jpeg", "webp")

STATIC_HINT = (
    "Static figure export (PNG/SVG/PDF) needs the optional 'kaleido' package and a Chrome or "
    "Chromium browser: pip install 'extractive_lens[static]' (or: pip install 'kaleido>=1'), and "
    "on Debian/Ubuntu apt-get install -y chromium. The HTML report (report.html) needs neither."
)


class StaticExportError(RuntimeError):
    """Static export was asked for but its optional dependency is missing or failed."""


def check_format(format: str) -> None:
    if format not in STATIC_FORMATS:
        raise ValueError(f"format must be one of {STATIC_FORMATS}, got {format!r}")


def safe_name(name: str) -> str:
    """``name`` with every character but letters, digits, ``-`` and ``_`` replaced by ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def write_figures(
    named: Mapping[str, Any],
    out_dir: str | os.PathLike,
    format: str = "png",
    *,
    overwrite: bool = False,
    scale: float = 2.0,
) -> list[Path]:
    """Write each ``{name: Figure}`` as ``out_dir/<name>.<format>``; existing files are kept
    unless ``overwrite``. Without ``kaleido``, a :class:`StaticExportError` says what to install.
    """
    check_format(format)
    try:
        import kaleido  # noqa: F401
    except ImportError as err:
        raise StaticExportError(STATIC_HINT) from err
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = {name: out / f"{safe_name(name)}.{format}" for name in named}
    clash = [str(p) for p in targets.values() if p.exists()]
    if clash and not overwrite:
        raise FileExistsError(f"{clash[0]} exists; pass overwrite=True to replace figure files.")
    import plotly.io as pio

    names = list(named)
    try:
        if hasattr(pio, "write_images"):  # kaleido >= 1: one browser for all figures
            pio.write_images(
                [named[n] for n in names], [targets[n] for n in names], format=format, scale=scale
            )
        else:
            for name in names:
                named[name].write_image(str(targets[name]), format=format, scale=scale)
    except Exception as err:  # kaleido reports a missing or broken browser in many ways
        raise StaticExportError(f"static export failed: {err}. {STATIC_HINT}") from err
    return [targets[n] for n in names]
