"""The main job (``extractive-lens demo``, ``make demo``): OCR, scores, graphs and a report.

On each dataset (first-hop and second-hop by default): finetune on the facts, rank the facts,
the implications and the deranged-pairing control (docs/method.md §6), compute the three extractive
scores of the finetuned delta on the implications and their extractive graph, and write
everything to a new output directory::

    out_dir/
      report.html              every figure, the header and the verdict in words (offline)
      summary.json             the summary table, verdicts, configuration, provenance
      first_hop/results.json   OCR history, final ranks, verdict (OCRResult.to_dict)
      first_hop/delta.safetensors    only with save_deltas (--save-deltas): 500+ MB each
      first_hop/scores.json    canonical scores per role (+ coverage, top components)
      first_hop/scores.safetensors   per-item scores [example, pos, layer(, head)] per role
      first_hop/graph.json     the extractive graph
      second_hop/...

>>> from extractive_lens.demo import run_demo
>>> result = run_demo("tiny", "runs/demo-tiny", epochs=2, lr=3e-3)  # doctest: +SKIP
>>> print(result.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from extractive_lens.models import DTYPES
from extractive_lens.report import ocr_summary_rows, overall_verdict, report
from extractive_lens.results import prepare_output_dir, provenance, write_json

__all__ = ["DEMO_DATASETS", "DatasetRun", "DemoResult", "format_summary_table", "run_demo"]

#: Datasets the demo runs by default.
DEMO_DATASETS = ("first_hop", "second_hop")

#: The demo's finetuning default: the lr with the largest OCR effect over both datasets in the
#: measured SmolLM2 sweep (docs/results.md §1: first-hop implications 2.65 vs control 9.90 over
#: 3 seeds at 3e-4 and 8 epochs; 6.10 vs 9.70 at 1e-4).
DEMO_LR = 3e-4


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


def run_demo(
    model_name: str = "smollm2-135m",
    out_dir: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    lr: float = DEMO_LR,
    epochs: int = 8,
    batch_size: int = 8,
    seed: int = 0,
    data_seed: int = 0,
    datasets: Sequence[str] = DEMO_DATASETS,
    paraphrases: bool = False,
    counterfactuals: int = 10,
    score_seed: int = 3,
    top_k: int = 12,
    device: str | None = None,
    dtype: torch.dtype | str = "float32",
    progress: bool = True,
    threads: int | None = None,
    model: Any = None,
    echo: Callable[[str], None] | None = print,
    save_deltas: bool = False,
) -> DemoResult:
    """Run the main job and write its results; see the module docstring for the layout.

    Args:
        model_name: ``"smollm2-135m"`` (default), ``"tiny"``, a local directory, ... (see
            ``load_model``). Ignored for loading when ``model`` is given (then only a label).
        out_dir: a new output directory (default ``runs/demo-<date>-<time>``).
        overwrite: replace an existing non-empty ``out_dir`` (otherwise ``FileExistsError``).
        lr, epochs, batch_size, seed: finetuning (Adam, block linear weights; default
            :data:`DEMO_LR` and 8 epochs, the measured best on SmolLM2).
        data_seed: seed of the built-in datasets' draw.
        datasets: dataset names or JSONL paths (default first-hop and second-hop).
        paraphrases: also train the facts' paraphrases.
        counterfactuals, score_seed: K counterfactual items per implication for the upstream
            score, and the seed of their draw.
        top_k: nodes per role in the extractive graph.
        device, dtype: where and in which precision to load the model.
        progress: progress bars for every step that takes more than a second.
        threads: set torch's CPU thread count for the whole process (default: leave it). On a
            CPU shared with other jobs, 1 thread can be several times faster than 2.
        model: an already loaded model to use instead of loading ``model_name``.
        echo: where the summary is printed (None: silent).
        save_deltas: also write each dataset's finetuned delta (fp32, about 540 MB for
            SmolLM2-135M); off by default so a demo directory stays small.
        The report can be rebuilt from the directory later: ``extractive-lens report DIR``.
    """
    from extractive_lens.data import get_dataset
    from extractive_lens.experiments.ocr import verify_ocr
    from extractive_lens.models import load_model, model_identity
    from extractive_lens.training import DivergedError

    start = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    if out_dir is None:
        out_dir = Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    out = prepare_output_dir(out_dir, overwrite)
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    if model is None:
        with _step(f"load {model_name}", progress):
            model = load_model(model_name, device=device, dtype=torch_dtype)
    identity = model_identity(model)
    config = {
        "model": model_name,
        "datasets": [str(d) for d in datasets],
        "lr": lr,
        "epochs": epochs,
        "batch_size": batch_size,
        "paraphrases": paraphrases,
        "counterfactuals": counterfactuals,
        "graph_top_k": top_k,
        "dtype": str(torch_dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "seed": seed,
        "data_seed": data_seed,
        "score_seed": score_seed,
        "save_deltas": save_deltas,
    }
    runs, notes = [], []
    for name in datasets:
        t0 = time.perf_counter()
        dataset = get_dataset(name, seed=data_seed)
        if progress:
            tqdm.write(f"{dataset.name}: finetuning on {len(dataset.facts)} facts")
        try:
            ocr = verify_ocr(
                model,
                dataset,
                lr=lr,
                epochs=epochs,
                batch_size=batch_size,
                seed=seed,
                paraphrases=paraphrases,
                progress=progress,
            )
        except FloatingPointError as err:  # diverged: reported, never shown as a result
            notes.append(f"{dataset.name}: DIVERGED, no results: {err}")
            continue
        with _step(f"{dataset.name}: extractive scores", progress):
            scores, canonical, note = _scores(
                model, ocr.delta, dataset, counterfactuals, score_seed
            )
        if note:
            notes.append(f"{dataset.name}: {note}")
        graph = None
        if canonical is not None:
            with _step(f"{dataset.name}: extractive graph", progress):
                graph, note = _graph(scores, canonical, top_k)
            if note:
                notes.append(f"{dataset.name}: {note}")
        runs.append(
            DatasetRun(dataset.name, ocr, scores, canonical, graph, time.perf_counter() - t0)
        )
        _save_run(out / dataset.name, runs[-1], save_deltas)
    if not runs:
        write_json(out / "summary.json", {"config": config, "notes": notes})
        raise DivergedError("every dataset of the demo diverged:\n" + "\n".join(notes))
    demo = DemoResult(
        identity, config, tuple(runs), out, None, time.perf_counter() - start, tuple(notes)
    )
    with _step("report", progress):
        path = report(demo, out / "report.html")
    demo = DemoResult(
        identity, config, tuple(runs), out, path, time.perf_counter() - start, tuple(notes)
    )
    write_json(out / "summary.json", demo.to_dict())
    if echo is not None:
        echo(demo.summary())
    return demo


# --------------------------------------------------------------------------- steps


def _scores(model: Any, delta: Any, dataset: Any, counterfactuals: int, seed: int):
    from extractive_lens.scores import AlignmentError, extractive_scores

    scores = extractive_scores(
        model,
        delta,
        dataset.implications,
        dataset.implication_options,
        counterfactuals=counterfactuals,
        seed=seed,
    )
    try:  # figures show each token's mean over the items that have it (entity slots vary)
        return scores, scores.canonical(per_slot=True), None
    except AlignmentError as err:
        return scores, None, f"no canonical scores or graph: {err}"


def _graph(scores: Any, canonical: dict[str, Any], top_k: int):
    try:
        from extractive_lens.graph import extractive_graph
    except ImportError:
        return None, "extractive_lens.graph is not available: no graph drawn"
    intervals = {  # edges only between nodes whose 95% bootstrap interval excludes 0
        role: s.canonical_interval(per_slot=True, seed=0) for role, s in scores.roles().items()
    }
    return extractive_graph(canonical, top_k=top_k, intervals=intervals), None


def _save_run(directory: Path, run: DatasetRun, save_delta: bool) -> None:
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


@contextmanager
def _step(desc: str, enabled: bool):
    """A progress bar for a single step of unknown length: shows the elapsed time live."""
    if not enabled:
        yield
        return
    bar = tqdm(total=1, desc=desc, bar_format="{desc}: {elapsed}{postfix}", leave=True)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    if sys.stderr.isatty():  # a live clock only where \r redraws in place (not in log files)
        thread.start()
    try:
        yield
        bar.set_postfix_str("done")
        bar.update(1)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        bar.close()
