"""What a demo run is: its settings (:class:`DemoConfig`), one :class:`DatasetRun` per dataset and
the whole :class:`DemoResult` with its summary table and verdict.

:func:`extractive_lens.demo.run_demo` produces them; :mod:`extractive_lens.demo_io` writes and
reads them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extractive_lens.report import ocr_summary_rows, overall_verdict
from extractive_lens.results import provenance


@dataclass(frozen=True)
class DemoConfig:
    """Every setting of a demo run, as ``summary.json`` records it (defaults: :func:`run_demo`).

    Attributes:
        model: the model's name (``load_model``), or the label of a model passed in.
        datasets: dataset names or JSONL paths (default first-hop and second-hop).
        lr, epochs, batch_size: finetuning (Adam, block linear weights; default ``demo.DEMO_LR``
            and 8 epochs, the measured best on SmolLM2).
        paraphrases: also train the facts' paraphrases.
        counterfactuals: K counterfactual items per implication for the upstream score.
        graph_top_k: nodes per role in the extractive graph.
        dtype: the precision the model was loaded in.
        threads: torch's CPU thread count during the run (``run_demo(threads=...)`` sets it for
            the whole process; on a CPU shared with other jobs 1 thread can be several times
            faster than 2).
        seed: the finetuning seed; data_seed: the built-in datasets' draw; score_seed: the
            counterfactuals' draw.
        save_deltas: also write each dataset's finetuned delta (fp32, about 540 MB for
            SmolLM2-135M); off by default so a demo directory stays small.
    """

    model: str
    datasets: list[str]
    lr: float
    epochs: int
    batch_size: int
    paraphrases: bool
    counterfactuals: int
    graph_top_k: int
    dtype: str
    threads: int
    seed: int
    data_seed: int
    score_seed: int
    save_deltas: bool


@dataclass(frozen=True)
class DatasetRun:
    """One dataset of the demo: the OCR result, the scores of its delta, the graph.

    Attributes:
        dataset: the dataset's name.
        ocr: the ``OCRResult`` (history, final ranks, verdict, delta).
        scores: the ``ExtractiveScores`` on the implications (None if skipped).
        canonical: ``{role: CanonicalScores}`` on the canonical template (None if the items
            could not be aligned).
        graph: the ``ExtractiveGraph`` (None if skipped or unavailable).
        seconds: wall time of this dataset (finetuning, ranking, scores, graph).
    """

    dataset: str
    ocr: Any
    scores: Any = None
    canonical: dict[str, Any] | None = None
    graph: Any = None
    seconds: float = 0.0


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes:
        model: the model's identity (``model_identity``).
        config: every setting of the run (hyperparameters, seeds, datasets).
        runs: one :class:`DatasetRun` per dataset.
        out_dir: the output directory (None if nothing was written).
        report_path: the HTML report (None if not written).
        seconds: wall time of the whole demo, model loading included.
    """

    model: dict[str, Any]
    config: dict[str, Any]
    runs: tuple[DatasetRun, ...]
    out_dir: Path | None = None
    report_path: Path | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def rows(self) -> list[dict[str, Any]]:
        """The summary table: fact, implication and control rank per dataset (docs/method.md §6)."""
        return ocr_summary_rows([r.ocr for r in self.runs])

    def verdict(self) -> str:
        """One sentence: on which datasets OCR happened, judged against the control."""
        return overall_verdict([r.ocr for r in self.runs])

    def summary(self) -> str:
        """The printed summary: table, verdict, wall time and where the report is."""
        lines = [format_summary_table(self.rows()), "", self.verdict(), *self.notes]
        lines += [r.ocr.capability() for r in self.runs if hasattr(r.ocr, "capability")]
        lines.append(f"demo wall time {self.seconds:.1f} s")
        if self.report_path is not None:
            lines.append(f"report: {self.report_path}")
        return "\n".join(lines)

    def __getitem__(self, dataset: str) -> DatasetRun:
        for run in self.runs:
            if run.dataset == dataset:
                return run
        raise KeyError(
            f"the demo has no dataset {dataset!r}; it has {[r.dataset for r in self.runs]}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": "demo",
            "model": self.model,
            "config": self.config,
            "summary": self.rows(),
            "verdict": self.verdict(),
            "verdicts": {r.dataset: r.ocr.verdict() for r in self.runs},
            "capability": {
                r.dataset: r.ocr.capability() for r in self.runs if hasattr(r.ocr, "capability")
            },
            "seconds": self.seconds,
            "dataset_seconds": {r.dataset: r.seconds for r in self.runs},
            "notes": list(self.notes),
            "report": None if self.report_path is None else self.report_path.name,
            "provenance": provenance(),
        }


def format_summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary rows as a fixed-width text table."""
    head = f"{'dataset':<12} {'fact':>6} {'impl.':>6} {'control':>8} {'chance':>7}  OCR?"
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(
            f"{row['dataset']:<12} {row['fact rank']:>6.2f} {row['implication rank']:>6.2f} "
            f"{row['control rank']:>8.2f} {row['chance']:>7.1f}  {row['OCR?']}"
        )
    return "\n".join(lines)
