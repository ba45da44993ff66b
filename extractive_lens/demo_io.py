"""A demo's output directory: :func:`save_run` writes each dataset's part as the demo finishes it;
:func:`load_demo` rebuilds the result (and :func:`rebuild_report` its report) without recomputing.

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

from extractive_lens.demo_result import DatasetRun, DemoResult
from extractive_lens.results import write_json

__all__ = ["load_demo", "rebuild_report", "save_run"]


def save_run(directory: Path, run: DatasetRun, save_delta: bool) -> None:
    """One dataset's results, scores (per item and canonical, with intervals) and graph."""
    from safetensors.torch import save_file

    run.ocr.save(directory, save_delta=save_delta)
    if run.scores is not None:
        tensors = {}
        for role, s in run.scores.roles().items():
            for key in ("mlp", "heads", "kv_heads"):
                value = getattr(s, key)
                if value is not None:
                    tensors[f"{role}.{key}"] = value.detach().float().contiguous().cpu()
        save_file(tensors, str(directory / "scores.safetensors"))
        coverage = run.scores.coverage
        write_json(
            directory / "scores.json",
            {
                "dataset": run.dataset,
                "split": "implications",
                "canonical": None
                if run.canonical is None
                else {role: c.to_dict() for role, c in run.canonical.items()},
                "top": None if run.canonical is None else _top_with_intervals(run),
                "coverage": None if coverage is None else coverage.to_dict(),
                "tokens": [list(t) for t in run.scores.informative.tokens],
                "counterfactuals": None
                if run.scores.upstream.counterfactuals is None
                else run.scores.upstream.counterfactuals.tolist(),
            },
        )
    if run.graph is not None:
        write_json(directory / "graph.json", run.graph.to_dict())


def _top_with_intervals(run: DatasetRun, k: int = 10) -> dict[str, list[dict[str, Any]]]:
    """Each role's ``k`` largest |scores| with a 95% bootstrap interval over the items."""
    out = {}
    for role, c in run.canonical.items():
        low, high = run.scores.roles()[role].canonical_interval(per_slot=c.per_slot, seed=0)
        out[role] = [
            {
                "component": str(comp),
                "position": pos,
                "score": value,
                "interval_95": [float(low.component(comp)[pos]), float(high.component(comp)[pos])],
            }
            for comp, pos, value in c.top(k, absolute=True)
        ]
    return out


def load_demo(out_dir: str | os.PathLike) -> Any:
    """A :class:`~extractive_lens.demo.DemoResult` read back from a demo's output directory."""
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
