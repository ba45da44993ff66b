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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from extractive_lens.data import get_dataset
from extractive_lens.demo_io import save_run
from extractive_lens.demo_result import DatasetRun, DemoConfig, DemoResult, format_summary_table
from extractive_lens.models import DTYPES, load_model, model_identity
from extractive_lens.report import report
from extractive_lens.results import prepare_output_dir, write_json
from extractive_lens.training import DivergedError

__all__ = [
    "DEMO_DATASETS",
    "DatasetRun",
    "DemoConfig",
    "DemoResult",
    "format_summary_table",
    "run_demo",
]

#: Datasets the demo runs by default.
DEMO_DATASETS = ("first_hop", "second_hop")

#: The demo's finetuning default: the lr with the largest OCR effect over both datasets in the
#: measured SmolLM2 sweep (docs/results.md §1: first-hop implications 2.65 vs control 9.90 over
#: 3 seeds at 3e-4 and 8 epochs; 6.10 vs 9.70 at 1e-4).
DEMO_LR = 3e-4


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
    """Run the main job and write its results (layout: the module docstring); return them.

    ``model`` (already loaded) replaces loading ``model_name`` (then only a label) on ``device``
    in ``dtype``; ``out_dir`` (default ``runs/demo-<date>-<time>``) must be new unless
    ``overwrite``. The other settings are :class:`DemoConfig`'s (``top_k`` is ``graph_top_k``);
    ``echo`` prints the summary (None: silent); ``progress`` shows a bar for every step longer
    than a second. ``extractive-lens report DIR`` rebuilds the report from the directory.
    """
    start = time.perf_counter()
    if threads is not None:  # for the whole process (see DemoConfig.threads)
        torch.set_num_threads(threads)
    if out_dir is None:
        out_dir = Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    out = prepare_output_dir(out_dir, overwrite)
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    if model is None:
        with _step(f"load {model_name}", progress):
            model = load_model(model_name, device=device, dtype=torch_dtype)
    identity = model_identity(model)
    config = DemoConfig(
        model=model_name,
        datasets=[str(d) for d in datasets],
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        paraphrases=paraphrases,
        counterfactuals=counterfactuals,
        graph_top_k=top_k,
        dtype=str(torch_dtype).removeprefix("torch."),
        threads=torch.get_num_threads(),
        seed=seed,
        data_seed=data_seed,
        score_seed=score_seed,
        save_deltas=save_deltas,
    )
    runs, notes = _run_datasets(model, datasets, config, out, progress)
    return _write_report(identity, config, runs, notes, out, start, progress, echo)


def _run_datasets(
    model: Any, datasets: Sequence[str], config: DemoConfig, out: Path, progress: bool
) -> tuple[list[DatasetRun], list[str]]:
    """Each dataset in turn, saved as soon as it is done; notes on what diverged or was skipped."""
    runs, notes = [], []
    for name in datasets:  # as given: a name or a path (config.datasets holds their text)
        run, run_notes = _run_dataset(model, name, config, progress)
        notes += run_notes
        if run is not None:
            runs.append(run)
            save_run(out / run.dataset, run, config.save_deltas)
    return runs, notes


def _run_dataset(
    model: Any, name: str, config: DemoConfig, progress: bool
) -> tuple[DatasetRun | None, list[str]]:
    """Finetune on the facts (OCR), score the delta on the implications, draw the graph."""
    # experiments/ loads plotly (its figures): imported here, so `extractive-lens --help` is light
    from extractive_lens.experiments.ocr import verify_ocr

    t0 = time.perf_counter()
    dataset = get_dataset(name, seed=config.data_seed)
    if progress:
        tqdm.write(f"{dataset.name}: finetuning on {len(dataset.facts)} facts")
    try:
        ocr = verify_ocr(
            model,
            dataset,
            lr=config.lr,
            epochs=config.epochs,
            batch_size=config.batch_size,
            seed=config.seed,
            paraphrases=config.paraphrases,
            progress=progress,
        )
    except FloatingPointError as err:  # diverged: reported, never shown as a result
        return None, [f"{dataset.name}: DIVERGED, no results: {err}"]
    notes = []
    with _step(f"{dataset.name}: extractive scores", progress):
        scores, canonical, note = _scores(
            model, ocr.delta, dataset, config.counterfactuals, config.score_seed
        )
    if note:
        notes.append(f"{dataset.name}: {note}")
    graph = None
    if canonical is not None:
        with _step(f"{dataset.name}: extractive graph", progress):
            graph, note = _graph(scores, canonical, config.graph_top_k)
        if note:
            notes.append(f"{dataset.name}: {note}")
    run = DatasetRun(dataset.name, ocr, scores, canonical, graph, time.perf_counter() - t0)
    return run, notes


def _write_report(
    identity: dict[str, Any],
    config: DemoConfig,
    runs: list[DatasetRun],
    notes: list[str],
    out: Path,
    start: float,
    progress: bool,
    echo: Callable[[str], None] | None,
) -> DemoResult:
    """The report and ``summary.json`` (with only the notes if every dataset diverged)."""
    if not runs:
        write_json(out / "summary.json", {"config": asdict(config), "notes": notes})
        raise DivergedError("every dataset of the demo diverged:\n" + "\n".join(notes))
    demo = DemoResult(
        identity, asdict(config), tuple(runs), out, None, time.perf_counter() - start, tuple(notes)
    )
    with _step("report", progress):
        path = report(demo, out / "report.html")
    demo = replace(demo, report_path=path, seconds=time.perf_counter() - start)
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
