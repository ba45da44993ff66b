"""Sweeps: run an experiment over a grid of configurations, resumably, and aggregate over seeds.

>>> from extractive_lens.experiments.sweep import sweep
>>> result = sweep("ocr", {"lr": [1e-3, 3e-3], "seed": [0, 1]}, model="tiny",
...                out_dir="runs/sweep", fixed={"epochs": 1})  # doctest: +SKIP
>>> result.table()  # one row per (lr), mean ± spread over seeds  # doctest: +SKIP

**Resuming.** Every configuration's task writes its record itself, atomically, to
``<out_dir>/runs/<key>.json`` the moment it finishes, where ``key`` is a hash of the experiment
name and the full configuration (defaults included). Running the same sweep again loads those
files instead of recomputing, so a sweep whose driver died continues where it stopped.
``<out_dir>/sweep.json`` records the experiment and the model; a directory made for another
experiment or model is refused. A run whose training diverged (``FloatingPointError``) is recorded
as ``"status": "failed"`` and not retried (it is deterministic) unless ``retry_failed=True``. A run
that raises anything else is reported (``SweepResult.errors``: configuration and traceback, also in
``<out_dir>/errors/``) while the others finish, and is tried again by the next run.

**Executors** (``extractive_lens.experiments.cluster``). ``executor`` runs the configurations: a
callable ``executor(fn, configs) -> iterable of records`` (the default runs them one after another
in this process), a ``concurrent.futures.Executor``, or a submitit executor (SLURM job arrays
through ``map_array``, or submitit's ``LocalExecutor`` with ``workers`` processes; see
``cluster.make_executor`` and docs/cluster.md). With anything that leaves this process give
``model`` as a name or directory, which each worker loads once, rather than a loaded model.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.experiments.cluster import (
    ExecutorLike,
    Record,
    SweepTask,
    config_key,
    is_submitit,
    local_executor,
    read_record,
    run_configs,
)
from extractive_lens.experiments.common import markdown_table, mean_spread, mean_spread_table
from extractive_lens.experiments.registry import Experiment, get_experiment
from extractive_lens.results import provenance, write_json

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["SweepResult", "SweepTask", "config_key", "load_sweep", "local_executor", "sweep"]

#: Configuration keys averaged over in ``SweepResult.table``.
OVER = ("seed",)


def grid_configs(
    spec: Experiment, grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every full configuration of the grid (cartesian product, in the grid's key order)."""
    fixed = dict(fixed or {})
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError("sweep: grid must be a non-empty mapping key -> list of values")
    both = sorted(set(grid) & set(fixed))
    if both:
        raise ValueError(f"sweep: keys {both} are both swept (grid) and fixed")
    for key, values in grid.items():
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"sweep: grid[{key!r}] must be a non-empty list, got {values!r}")
    spec.config({**fixed, **{k: v[0] for k, v in grid.items()}})  # unknown keys fail here
    configs = []
    for point in itertools.product(*grid.values()):
        configs.append(spec.config({**fixed, **dict(zip(grid, point, strict=True))}))
    keys = [config_key(spec.name, c) for c in configs]
    if len(set(keys)) != len(keys):
        raise ValueError("sweep: the grid repeats a configuration (duplicate values?)")
    return configs


def model_label(model: str | TransformerBridge) -> str:
    if isinstance(model, str):
        return model
    return str(model.cfg.model_name)


@dataclass(frozen=True)
class SweepResult:
    """The records of a sweep and their aggregation over seeds.

    Attributes:
        experiment: the experiment's name.
        model: the model's label (name given, or the loaded model's ``cfg.model_name``).
        grid: the swept keys and their values.
        fixed: the fixed keys.
        records: one per configuration, in grid order: ``key``, ``config``, ``status``
            (``ok`` / ``failed`` / ``error``), ``summary`` (flat metrics), ``table``,
            ``result`` (the full ``to_dict()``), ``seconds``; failed (diverged) and ``error``
            (raised) ones carry ``error``, the latter also ``traceback``.
        out_dir: the sweep directory.
        n_resumed: configurations loaded from earlier runs instead of run.
        seconds: wall time of this call (resumed configurations cost ~0).
    """

    experiment: str
    model: str
    grid: dict[str, list[Any]]
    fixed: dict[str, Any]
    records: tuple[Record, ...] = field(repr=False)
    out_dir: Path | None = None
    n_resumed: int = 0
    seconds: float = 0.0

    @property
    def errors(self) -> list[Record]:
        """Records of the runs that raised (configuration, ``error``, ``traceback``); they are
        run again by the next call of the same sweep."""
        return [r for r in self.records if r["status"] == "error"]

    @property
    def group_keys(self) -> list[str]:
        """The swept keys a table row is labelled by (the grid keys except ``seed``)."""
        return [k for k in self.grid if k not in OVER]

    def metrics(self) -> list[str]:
        """Every summary metric name, in first-seen order."""
        names: dict[str, None] = {}
        for r in self.records:
            names.update(dict.fromkeys(r.get("summary", {})))
        return list(names)

    def table(self, metrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One row per configuration without the seed: its swept values, ``n`` (finished runs),
        ``failed`` and, per metric, ``{"mean", "std", "min", "max", "n"}`` over the seeds."""
        metrics = list(metrics or self.metrics())
        unknown = [m for m in metrics if m not in self.metrics()]
        if unknown:
            raise KeyError(f"no metrics {unknown}; the sweep has {self.metrics()}")
        groups: dict[str, list[Record]] = {}
        for r in self.records:
            label = json.dumps([r["config"].get(k) for k in self.group_keys], default=str)
            groups.setdefault(label, []).append(r)
        rows = []
        for records in groups.values():
            ok = [r for r in records if r["status"] == "ok"]
            row: dict[str, Any] = {k: records[0]["config"].get(k) for k in self.group_keys}
            row["n"] = len(ok)
            row["failed"] = len(records) - len(ok)
            for m in metrics:
                row[m] = mean_spread(
                    r["summary"].get(m) for r in ok if r["summary"].get(m) is not None
                )
            rows.append(row)
        return rows

    def seed_table(self, **where: Any) -> list[dict[str, Any]]:
        """The experiment's own ``table()`` with every numeric cell as mean ± spread over the
        finished runs matching ``where`` (config key -> value), e.g. ``seed_table(lr=1e-4)``."""
        chosen = [
            r
            for r in self.records
            if r["status"] == "ok" and all(r["config"].get(k) == v for k, v in where.items())
        ]
        if not chosen:
            raise ValueError(f"no finished runs match {where}")
        return mean_spread_table([r["table"] for r in chosen])

    def best(
        self,
        metric: str,
        *,
        minimize: bool = True,
        where: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The table row with the best mean of ``metric`` (optionally among rows matching
        ``where``); rows without finished runs are skipped."""
        rows = [
            r
            for r in self.table([metric])
            if r["n"]
            and all(r.get(k) == v for k, v in (where or {}).items())
            and not math.isnan(r[metric]["mean"])
        ]
        if not rows:
            raise ValueError(f"no finished runs for {metric!r} matching {where}")
        return (min if minimize else max)(rows, key=lambda r: r[metric]["mean"])

    def markdown(self, metrics: Sequence[str] | None = None, digits: int = 2) -> str:
        rows = self.table(metrics)
        return markdown_table(rows, digits=digits)

    def figure(
        self, metrics: Sequence[str] | None = None, x: str | None = None, y: str | None = None
    ) -> go.Figure:
        """Heatmaps of the mean (text: mean ± std) over two swept keys, one per metric.

        ``x`` defaults to ``lr`` if swept (else the first group key), ``y`` to the next one.
        Default metrics: the first four.
        """
        from extractive_lens.experiments.figures import grid_figure

        keys = self.group_keys or list(self.grid)
        x = x or ("lr" if "lr" in keys else keys[0])
        rest = [k for k in keys if k != x]
        y = y if y is not None else (rest[0] if rest else None)
        metrics = list(metrics or self.metrics()[:4])
        cells = self.table(metrics)
        return grid_figure(
            cells,
            x=x,
            y=y,
            metrics=metrics,
            title=f"Sweep of {self.experiment} on {self.model} (mean over seeds)",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": f"sweep/{self.experiment}",
            "model": self.model,
            "grid": self.grid,
            "fixed": self.fixed,
            "table": self.table(),
            "n_configs": len(self.records),
            "n_resumed": self.n_resumed,
            "errors": [{k: r[k] for k in ("key", "config", "error")} for r in self.errors],
            "seconds": self.seconds,
            "run_seconds": sum(r.get("seconds", 0.0) for r in self.records),
            "keys": [r["key"] for r in self.records],
            "provenance": provenance(),
        }

    def save(self, out_dir: str | Path | None = None) -> Path:
        """Write ``summary.json``, ``table.md`` and ``figure.html`` (into the sweep directory)."""
        out = Path(out_dir or self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "summary.json", self.to_dict())
        (out / "table.md").write_text(self.markdown() + "\n")
        try:
            self.figure().write_html(out / "figure.html", include_plotlyjs="cdn")
        except Exception as err:
            (out / "figure.error.txt").write_text(f"{type(err).__name__}: {err}\n")
        return out


def sweep(
    experiment: str | Experiment,
    grid: Mapping[str, Sequence[Any]],
    *,
    model: str | TransformerBridge,
    out_dir: str | Path,
    fixed: Mapping[str, Any] | None = None,
    executor: Executor | ExecutorLike | Any | None = None,
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    load: Mapping[str, str] | None = None,
) -> SweepResult:
    """Run ``experiment`` on every configuration of ``grid`` (see the module doc).

    Args:
        experiment: a name in ``registry.EXPERIMENTS`` or an ``Experiment``.
        grid: configuration key -> non-empty list of values (e.g. ``lr``, ``epochs``, ``seed``,
            ``dataset``); the cartesian product is run. Unknown keys raise ``ValueError``.
        model: a loaded model, or a name / directory for ``load_model`` (loaded once per process).
        out_dir: the sweep directory; finished configurations in it are reused.
        fixed: further configuration values shared by all runs.
        executor: how to run the configurations (module doc); default: here, one by one.
        workers: with submitit, this many array tasks (default one per configuration).
        retry_failed: rerun configurations recorded as failed (diverged).
        log: called with one line per configuration (e.g. ``print``).
        load: ``device`` / ``dtype`` (by name) for loading ``model`` when it is a name.
    """
    start = time.perf_counter()
    spec = get_experiment(experiment)
    configs = grid_configs(spec, grid, fixed)
    _check_model_travels(executor, model)
    out = Path(out_dir)
    label = model_label(model)
    _claim_directory(out, {"experiment": spec.name, "model": label})
    say = log or (lambda _: None)
    done = _finished(spec, configs, out / "runs", retry_failed)
    todo = [c for c in configs if config_key(spec.name, c) not in done]
    say(
        f"sweep {spec.name}: {len(configs)} configurations, {len(done)} already done, "
        f"{len(todo)} to run"
    )
    task = SweepTask(spec, model, progress, out / "runs", retry_failed, **dict(load or {}))
    for record in run_configs(executor, task, todo, workers) if todo else ():
        done[record["key"]] = record
        _log_record(say, record, grid)
    _check_all_ran(spec, configs, done)
    result = SweepResult(
        experiment=spec.name,
        model=label,
        grid={k: list(v) for k, v in grid.items()},
        fixed=dict(fixed or {}),
        records=tuple(done[config_key(spec.name, c)] for c in configs),
        out_dir=out,
        n_resumed=len(configs) - len(todo),
        seconds=time.perf_counter() - start,
    )
    result.save(out)
    return result


def _check_model_travels(executor: Any, model: str | TransformerBridge) -> None:
    """A process pool or submitit needs the model by name: a loaded one cannot travel."""
    leaves = isinstance(executor, ProcessPoolExecutor) or is_submitit(executor)
    if leaves and not isinstance(model, str):
        raise ValueError(
            "sweep: with a process pool or submitit give model as a name or directory (each "
            "worker loads it once); a loaded model cannot be sent to other processes"
        )


def _check_all_ran(spec: Experiment, configs: list[dict[str, Any]], done: dict) -> None:
    missing = [c for c in configs if config_key(spec.name, c) not in done]
    if missing:
        raise RuntimeError(f"sweep: the executor returned no result for {len(missing)} configs")


def _finished(
    spec: Experiment, configs: list[dict[str, Any]], runs: Path, retry_failed: bool
) -> dict[str, Record]:
    """The records of the configurations an earlier run finished (key -> record); failed
    (diverged) ones count as finished unless ``retry_failed``."""
    done: dict[str, Record] = {}
    for config in configs:
        key = config_key(spec.name, config)
        record = read_record(runs, key, config)
        if record is not None and not (record["status"] == "failed" and retry_failed):
            done[key] = record
    return done


def _log_record(say: Callable[[str], None], record: Record, grid: Mapping[str, Any]) -> None:
    """One line per finished configuration (and the traceback of one that raised)."""
    swept = {k: record["config"].get(k) for k in grid}
    say(f"  {record['status']:6} {swept} ({record.get('seconds', 0):.1f} s)")
    if record["status"] == "error":
        say(f"    {record['error']}\n{record.get('traceback', '')}")


def _claim_directory(out: Path, manifest: dict[str, str]) -> None:
    """Write ``sweep.json`` and make ``runs/``; refuse a directory holding another experiment's
    or model's sweep."""
    if (out / "sweep.json").exists():
        previous = json.loads((out / "sweep.json").read_text())
        if {k: previous.get(k) for k in manifest} != manifest:
            raise ValueError(
                f"{out} holds a sweep of {previous.get('experiment')!r} on "
                f"{previous.get('model')!r}, not {manifest['experiment']!r} on "
                f"{manifest['model']!r}: use another directory"
            )
    elif out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", manifest)


def load_sweep(out_dir: str | Path) -> list[Record]:
    """Every record stored in a sweep directory (any grid), sorted by key."""
    runs = Path(out_dir) / "runs"
    if not runs.is_dir():
        raise ValueError(f"{out_dir} is not a sweep directory (no runs/ inside)")
    return [json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))]
