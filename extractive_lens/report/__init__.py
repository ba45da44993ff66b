"""One self-contained HTML report per run: header, verdict in words, every figure with a caption.

The file embeds plotly.js, so it opens with no network. Every figure comes with one sentence on
how to read it. Static copies (PNG, SVG, PDF) need the optional ``kaleido`` package
(``pip install 'extractive_lens[static]'``); the HTML report never does.

>>> from extractive_lens import tiny_model, first_hop, verify_ocr
>>> from extractive_lens.report import report
>>> result = verify_ocr(tiny_model(), first_hop(), lr=3e-3, epochs=1, progress=False)
>>> import tempfile, pathlib
>>> path = report([result], pathlib.Path(tempfile.mkdtemp()) / "report.html")
>>> path.name
'report.html'

What ``results`` may be (:func:`build_report`):

- a ``DemoResult`` (:func:`extractive_lens.demo.run_demo`): training curves, summary table, and per
  dataset the score heatmaps, the per-head drill-down and the extractive graph;
- an ``OCRResult`` or a sequence of them: training curves and summary table;
- a :class:`Report` already built (extra figures added with :meth:`Report.add`).

Modules: :mod:`.page` (the :class:`Report` and its HTML), :mod:`.sections` (figures and captions),
:mod:`.verdict` (summary rows, verdicts in words), :mod:`.header` (the run's facts),
:mod:`.static` (PNG/SVG/PDF copies).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from extractive_lens.report.header import run_header
from extractive_lens.report.page import FigureEntry, Report
from extractive_lens.report.sections import add_ocr_figures, demo_report
from extractive_lens.report.static import (
    STATIC_FORMATS,
    STATIC_HINT,
    StaticExportError,
    check_format,
    write_figures,
)
from extractive_lens.report.verdict import ocr_summary_rows, overall_verdict, verdict_lines
from extractive_lens.report.verdict import ocr_word as _ocr_word  # noqa: F401 (tests use it)

__all__ = [
    "STATIC_FORMATS",
    "STATIC_HINT",
    "FigureEntry",
    "Report",
    "StaticExportError",
    "build_report",
    "ocr_summary_rows",
    "overall_verdict",
    "report",
    "save_figures",
]


def build_report(results: Any, *, title: str | None = None) -> Report:
    """The :class:`Report` for a ``DemoResult``, an ``OCRResult`` or a sequence of them."""
    if isinstance(results, Report):
        return results
    if hasattr(results, "runs"):
        return demo_report(results, title)
    runs = list(results) if isinstance(results, Sequence) else [results]
    if not runs or not all(hasattr(r, "verdict") for r in runs):
        raise TypeError(
            "report() takes a DemoResult, an OCRResult or a sequence of OCRResults, "
            f"got {type(results).__name__}"
        )
    rep = Report(title or f"OCR on {runs[0].model.get('name', 'a model')}")
    rep.header = run_header(
        runs[0].model, runs, extra_config={}, seconds=sum(r.seconds for r in runs)
    )
    rep.paragraphs.append(("Did out-of-context reasoning happen?", verdict_lines(runs)))
    add_ocr_figures(rep, runs)
    return rep


def report(
    results: Any,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the HTML report of ``results`` (see :func:`build_report`) to ``path``; return it."""
    return build_report(results, title=title).write(path, overwrite=overwrite)


def save_figures(
    figures: Any,
    out_dir: str | os.PathLike,
    format: str = "png",
    *,
    overwrite: bool = False,
    scale: float = 2.0,
) -> list[Path]:
    """Write every figure as ``out_dir/<name>.<format>`` (png, svg, pdf, jpeg, webp).

    ``figures`` is a :class:`Report`, a ``{name: Figure}`` mapping, or any ``results``
    :func:`build_report` accepts. Needs the optional ``kaleido`` package; without it a
    :class:`StaticExportError` says how to install it. Existing files are kept unless
    ``overwrite``.
    """
    check_format(format)
    if isinstance(figures, Mapping):
        named = dict(figures)
    else:
        named = {e.name: e.figure for e in build_report(figures).figures}
    return write_figures(named, out_dir, format, overwrite=overwrite, scale=scale)
