"""Running a sweep's configurations: in this process, a process pool, or submitit (SLURM / local).

Every configuration runs as a ``SweepTask`` that writes its **own** record atomically to
``<runs>/<key>.json`` (a temporary file, then ``os.replace``) the moment it finishes. A driver that
dies (a login-node logout, a killed head job) therefore loses nothing that finished: the next run
of the same sweep finds the records and skips those configurations. A task whose experiment raises
returns an ``"error"`` record with its configuration and traceback (also written to
``<out>/errors/<key>.json``, removed once the configuration succeeds) and the other tasks go on;
errors are not final, so a rerun tries that configuration again.

With submitit (``pip install 'extractive_lens[cluster]'``) the configurations go out as one job
array through ``executor.map_array``: on SLURM one array task per configuration, at most
``array_parallelism`` at once; with submitit's ``LocalExecutor`` (same code, no SLURM) the
configurations are dealt into ``workers`` array tasks, each running its share one after another
(``LocalExecutor`` starts every job at once, so the share is what bounds the parallelism).
A preempted or timed-out array task is requeued through submitit's checkpointing
(``TaskShard.checkpoint``); the requeued task skips the configurations whose records exist and
restarts the unfinished one from scratch (an experiment is minutes, not days).
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.experiments.registry import (
    Experiment,
    get_experiment,
    result_table,
    summarize,
)
from extractive_lens.results import write_json

Record = dict[str, Any]
Task = Callable[[dict[str, Any]], Record]
ExecutorLike = Callable[[Task, list[dict[str, Any]]], Iterable[Record]]

_MODELS: dict[str, TransformerBridge] = {}


def config_key(experiment: str, config: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit hash of the experiment name and its full configuration."""
    import hashlib

    text = json.dumps(
        {"experiment": experiment, "config": config},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_record(runs: Path, key: str, config: Mapping[str, Any]) -> Record | None:
    """The finished record of ``config`` in ``runs``, or None (absent, unreadable, other config)."""
    path = Path(runs) / f"{key}.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None  # writes are atomic, so only a foreign file can be unreadable: run it again
    if record.get("config") != json.loads(json.dumps(config, default=str)):
        return None
    return record


@dataclass
class SweepTask:
    """Runs one configuration, writes its record (when ``runs`` is set) and returns it.

    Picklable when ``model`` is a name or directory (each process loads it once) and
    ``experiment`` a registered name or an ``Experiment`` whose function cloudpickle can carry.

    Attributes:
        experiment: the experiment (name or ``Experiment``).
        model: a loaded model, or a name / directory for ``load_model``.
        progress: show progress bars.
        runs: the sweep's ``runs/`` directory; records are written there by the task itself.
        retry_failed: rerun a configuration recorded as diverged instead of returning its record.
        device: ``load_model``'s device when ``model`` is a name (e.g. ``"cuda"``).
        dtype: ``load_model``'s dtype by name (``"bfloat16"``, ``"float16"``, ``"float32"``).
    """

    experiment: str | Experiment
    model: str | TransformerBridge
    progress: bool = False
    runs: Path | None = None
    retry_failed: bool = False
    device: str | None = None
    dtype: str | None = None

    def load(self) -> TransformerBridge:
        if not isinstance(self.model, str):
            return self.model
        cache = f"{self.model}|{self.device}|{self.dtype}"
        if cache not in _MODELS:
            import torch

            from extractive_lens.models import load_model

            dtype = getattr(torch, self.dtype) if self.dtype else torch.float32
            _MODELS[cache] = load_model(self.model, device=self.device, dtype=dtype)
        return _MODELS[cache]

    def __call__(self, config: dict[str, Any]) -> Record:
        spec = get_experiment(self.experiment)
        key = config_key(spec.name, config)
        if self.runs is not None:  # a requeued array task, or a second driver: never run twice
            done = read_record(self.runs, key, config)
            if done is not None and not (done["status"] == "failed" and self.retry_failed):
                return done
        record: Record = {"key": key, "experiment": spec.name, "config": config}
        start = time.perf_counter()
        try:
            result = spec.run(self.load(), dict(config), self.progress)
        except FloatingPointError as err:  # diverged training: deterministic, a final outcome
            record.update(status="failed", error=str(err), seconds=time.perf_counter() - start)
        except Exception as err:  # a bug or a resource error: reported, retried on the next run
            record.update(
                status="error",
                error=f"{type(err).__name__}: {err}",
                traceback=traceback.format_exc(),
                seconds=time.perf_counter() - start,
            )
            self._write(record, error=True)
            return record
        else:
            record.update(
                status="ok",
                summary=summarize(result),
                table=result_table(result),
                result=result.to_dict(),
                seconds=time.perf_counter() - start,
            )
        record = json.loads(json.dumps(record, default=_jsonable))
        self._write(record)
        return record

    def _write(self, record: Record, error: bool = False) -> None:
        if self.runs is None:
            return
        errors = Path(self.runs).parent / "errors"
        if error:
            errors.mkdir(exist_ok=True)
            write_json(errors / f"{record['key']}.json", record)
            return
        write_json(Path(self.runs) / f"{record['key']}.json", record)
        (errors / f"{record['key']}.json").unlink(missing_ok=True)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


@dataclass
class TaskShard:
    """One array task: runs its configurations one after another (submitit-checkpointable)."""

    task: SweepTask

    def __call__(self, configs: list[dict[str, Any]]) -> list[Record]:
        return [self.task(c) for c in configs]

    def checkpoint(self, configs: list[dict[str, Any]]) -> Any:
        """Called by submitit on preemption or timeout: requeue the same shard (finished
        configurations are skipped because their records are on disk)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(TaskShard(self.task), configs)


def local_executor(fn: Task, configs: list[dict[str, Any]]) -> Iterator[Record]:
    """Run the configurations one after another in this process (the default executor)."""
    for config in configs:
        yield fn(config)


def is_submitit(executor: Any) -> bool:
    return hasattr(executor, "map_array") and hasattr(executor, "update_parameters")


def run_configs(
    executor: Executor | ExecutorLike | Any | None,
    task: SweepTask,
    configs: list[dict[str, Any]],
    workers: int | None = None,
) -> Iterator[Record]:
    """Run ``task`` on every configuration with ``executor`` (a callable, a
    ``concurrent.futures.Executor`` or a submitit executor); yields records as they finish."""
    if executor is None:
        yield from local_executor(task, configs)
    elif is_submitit(executor):
        yield from _submitit(executor, task, configs, workers)
    elif isinstance(executor, Executor) or hasattr(executor, "submit"):
        futures = [executor.submit(task, c) for c in configs]
        for future in as_completed(futures):
            yield future.result()
    elif callable(executor):
        yield from executor(task, configs)
    else:
        raise TypeError(
            f"executor must be a callable, a concurrent.futures.Executor or a submitit executor: "
            f"{executor!r}"
        )


def _submitit(
    executor: Any, task: SweepTask, configs: list[dict[str, Any]], workers: int | None
) -> Iterator[Record]:
    from submitit.helpers import as_completed as jobs_completed

    n = len(configs) if workers is None else max(1, min(workers, len(configs)))
    shards = [configs[i::n] for i in range(n)]
    jobs = executor.map_array(TaskShard(task), shards)
    shard_of = {id(job): shard for job, shard in zip(jobs, shards, strict=True)}
    for job in jobs_completed(jobs, poll_frequency=1):
        try:
            yield from job.result()
        except Exception as err:  # the array task itself died (killed, out of memory, timeout)
            for config in shard_of[id(job)]:
                yield _job_failure(task, config, job, err)


def _job_failure(task: SweepTask, config: dict[str, Any], job: Any, err: Exception) -> Record:
    spec = get_experiment(task.experiment)
    key = config_key(spec.name, config)
    done = read_record(task.runs, key, config) if task.runs is not None else None
    if done is not None:  # finished before the array task died
        return done
    record = {
        "key": key,
        "experiment": spec.name,
        "config": config,
        "status": "error",
        "error": f"array task {job.job_id} died: {type(err).__name__}: {err}",
        "traceback": str(err),
    }
    task._write(record, error=True)
    return record


def make_executor(kind: str, folder: str | Path, *, timeout_min: int = 240, **slurm: Any) -> Any:
    """A submitit executor writing its logs and pickles under ``folder``.

    ``kind="slurm"``: job arrays on SLURM; ``slurm`` holds ``slurm_parameters``' arguments
    (``partition``, ``gpus_per_task``, ``array_parallelism``, ...), ``timeout_min`` is the
    limit per array task, after which submitit requeues it. ``kind="local"``: submitit's
    ``LocalExecutor`` (no SLURM; one process per array task, ``timeout_min`` each).
    """
    try:
        import submitit
    except ImportError as err:
        raise ImportError(
            "submitit is needed for --executor slurm/local: pip install 'extractive_lens[cluster]'"
        ) from err
    if kind == "local":
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=timeout_min)
        return executor
    if kind != "slurm":
        raise ValueError(f"unknown executor {kind!r}; choose slurm or local")
    params = slurm_parameters(timeout_min=timeout_min, **slurm)  # bad values fail before sbatch
    try:
        executor = submitit.SlurmExecutor(folder=str(folder))
    except RuntimeError as err:
        raise RuntimeError(
            f"{err} (--executor slurm submits with sbatch; run it on a SLURM login node, or use "
            "--executor local)"
        ) from err
    executor.update_parameters(**params)
    return executor


def slurm_parameters(
    *,
    partition: str | None,
    gpus_per_task: int = 0,
    cpus_per_task: int | None = None,
    mem_gb: float | None = None,
    timeout_min: int = 240,
    array_parallelism: int = 16,
    account: str | None = None,
) -> dict[str, Any]:
    """``SlurmExecutor.update_parameters`` arguments for one experiment per array task."""
    if not partition:
        raise ValueError("--executor slurm needs --partition (the SLURM partition to run on)")
    if array_parallelism < 1:
        raise ValueError(f"array_parallelism must be >= 1, got {array_parallelism}")
    params: dict[str, Any] = {
        "partition": partition,
        "time": int(timeout_min),
        "array_parallelism": int(array_parallelism),
        "ntasks_per_node": 1,
        "nodes": 1,
        "signal_delay_s": 120,  # time for the requeue before SLURM kills the task
        "job_name": "extractive-lens-sweep",
    }
    if gpus_per_task:
        params["gpus_per_task"] = int(gpus_per_task)
    if cpus_per_task:
        params["cpus_per_task"] = int(cpus_per_task)
    if mem_gb:
        params["mem"] = f"{int(mem_gb)}GB"
    if account:
        params["account"] = account
    return params
