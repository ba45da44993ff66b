"""Rebuild a demo's result (and its report) from its output directory, without recomputing.

``extractive-lens report DIR`` reads what :func:`extractive_lens.demo.run_demo` wrote:
``summary.json`` (configuration, model, notes), and per dataset ``results.json`` (the OCR history
and per-item ranks), ``scores.json`` (canonical scores) and ``graph.json``. The delta is loaded
only if the run saved it (``--save-deltas``); the report needs none of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["load_demo", "rebuild_report"]


def load_demo(out_dir: str | os.PathLike) -> Any:
    """A :class:`~extractive_lens.demo.DemoResult` read back from a demo's output directory."""
    from extractive_lens.demo import DatasetRun, DemoResult
    from extractive_lens.plots.heatmaps import as_canonical

    out = Path(out_dir)
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(
            f"{out} is not a demo output directory (no summary.json); give the directory that "
            "`extractive-lens demo --out DIR` wrote"
        )
    summary = json.loads(summary_path.read_text())
    runs = []
    for name, seconds in summary.get("dataset_seconds", {}).items():
        ocr = _load_ocr(out / name)
        scores_path, graph_path = out / name / "scores.json", out / name / "graph.json"
        canonical = None
        if scores_path.is_file():
            stored = json.loads(scores_path.read_text()).get("canonical")
            canonical = None if stored is None else as_canonical(stored)
        graph = json.loads(graph_path.read_text()) if graph_path.is_file() else None
        runs.append(DatasetRun(name, ocr, None, canonical, graph, seconds))
    if not runs:
        raise ValueError(f"{summary_path} lists no finished dataset (nothing to report)")
    return DemoResult(
        summary["model"],
        summary["config"],
        tuple(runs),
        out,
        None,
        summary.get("seconds", 0.0),
        tuple(summary.get("notes", ())),
    )


def rebuild_report(
    out_dir: str | os.PathLike, path: str | os.PathLike | None = None, overwrite: bool = False
) -> Path:
    """Write the report of a saved demo (default ``out_dir/report.html``, replaced only with
    ``overwrite``)."""
    from extractive_lens.report import report

    demo = load_demo(out_dir)
    return report(
        demo, Path(out_dir) / "report.html" if path is None else path, overwrite=overwrite
    )


def _load_ocr(directory: Path) -> Any:
    from extractive_lens.experiments.ocr import OCRResult

    return OCRResult.load(directory)
