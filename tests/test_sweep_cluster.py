"""Sweeps through submitit: records written by the tasks, a killed driver, errors, requeues, SLURM.

The killed-driver test runs a real OCR sweep of the tiny model through submitit's LocalExecutor with
2 worker processes, kills the driver and its workers (SIGKILL to the process group) once some
configurations have finished, and reruns the same command: nothing finished may run again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from extractive_lens.experiments.cluster import (
    SweepTask,
    TaskShard,
    config_key,
    make_executor,
    slurm_parameters,
)
from extractive_lens.experiments.registry import Experiment
from extractive_lens.experiments.sweep import sweep

submitit = pytest.importorskip("submitit", reason="submitit is in the dev extra")

ROOT = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path

    import submitit

    from extractive_lens.experiments.registry import EXPERIMENTS, Experiment
    from extractive_lens.experiments.sweep import sweep

    OUT, COUNTS = Path(sys.argv[1]), Path(sys.argv[2])


    def counted_ocr(model, config, progress):
        # One line per start, keyed like the sweep's records (defined here: pickled by value).
        from extractive_lens.experiments.cluster import config_key

        with open(COUNTS / config_key("counted_ocr", config), "a") as f:
            f.write(f"{os.getpid()}\\n")
        return EXPERIMENTS["ocr"].run(model, config, progress)


    spec = Experiment("counted_ocr", counted_ocr, EXPERIMENTS["ocr"].defaults)
    result = sweep(
        spec,
        {"lr": [1e-3, 3e-3, 1e-2], "seed": [0, 1]},
        fixed={"epochs": 2},
        model="tiny",
        out_dir=OUT,
        executor=submitit.LocalExecutor(folder=str(OUT / "submitit")),
        workers=2,
    )
    print("RESUMED", result.n_resumed, "OK", sum(r["status"] == "ok" for r in result.records))
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _starts(counts: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().split()) for p in counts.iterdir()}


def _records(out: Path) -> dict[str, int]:
    runs = out / "runs"
    return {p.stem: p.stat().st_mtime_ns for p in runs.glob("*.json")} if runs.is_dir() else {}


@pytest.mark.slow
def test_killed_driver_then_rerun_recomputes_nothing_finished(tmp_path):
    out, counts = tmp_path / "sweep", tmp_path / "counts"
    counts.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    cmd = [sys.executable, str(driver), str(out), str(counts)]
    first = subprocess.Popen(cmd, cwd=ROOT, env=_env(), start_new_session=True)
    deadline = time.monotonic() + 240
    while len(_records(out)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # The driver, the submitit controllers and the array tasks share the session's group.
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.5)
    before, started_before = _records(out), _starts(counts)
    assert 2 <= len(before) < 6, f"the kill came too late or too early: {len(before)} records"
    assert all(started_before[k] == 1 for k in before)

    rerun = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"RESUMED {len(before)} OK 6" in rerun.stdout
    after, started_after = _records(out), _starts(counts)
    assert len(after) == 6
    for key, mtime in before.items():  # finished before the kill: neither run nor rewritten
        assert started_after[key] == 1 and after[key] == mtime
    # every unfinished configuration ran exactly once in the rerun
    new_starts = sum(started_after.values()) - sum(started_before.values())
    assert new_starts == 6 - len(before)
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert {r["status"] for r in records} == {"ok"}
    assert {(r["config"]["lr"], r["config"]["seed"]) for r in records} == {
        (lr, s) for lr in (1e-3, 3e-3, 1e-2) for s in (0, 1)
    }


class FakeResult:
    def summary(self):
        return {"score": 1.0}

    def table(self):
        return [{"row": "a"}]

    def to_dict(self):
        return {}


class FakeModel:
    class cfg:  # noqa: N801
        model_name = "fake-model"


def fake(calls: list, raise_on=None) -> Experiment:
    def run(model, config, progress):
        calls.append(config["lr"])
        if config["lr"] == raise_on:
            raise ValueError(f"bad lr {config['lr']}")
        return FakeResult()

    return Experiment("fake", run, {"lr": 1.0, "seed": 0})


def test_a_raising_task_is_reported_and_the_others_finish(tmp_path):
    calls = []
    grid = {"lr": [1.0, 2.0, 3.0]}
    result = sweep(fake(calls, raise_on=2.0), grid, model=FakeModel(), out_dir=tmp_path)
    assert calls == [1.0, 2.0, 3.0]
    (error,) = result.errors
    assert error["config"]["lr"] == 2.0 and error["error"] == "ValueError: bad lr 2.0"
    assert "Traceback" in error["traceback"] and "raise ValueError" in error["traceback"]
    assert [r["status"] for r in result.records] == ["ok", "error", "ok"]
    assert result.table()[1]["failed"] == 1
    stored = tmp_path / "errors" / f"{error['key']}.json"
    assert json.loads(stored.read_text())["config"]["lr"] == 2.0
    assert not (tmp_path / "runs" / f"{error['key']}.json").exists()
    calls.clear()
    again = sweep(fake(calls), grid, model=FakeModel(), out_dir=tmp_path)
    assert calls == [2.0] and again.n_resumed == 2 and not again.errors  # errors are retried
    assert not stored.exists()


def test_tasks_write_their_own_records_and_requeues_skip_them(tmp_path):
    calls = []
    spec = fake(calls)
    task = SweepTask(spec, FakeModel(), runs=tmp_path)
    configs = [spec.config({"lr": lr}) for lr in (1.0, 2.0)]
    record = task(configs[0])
    stored = json.loads((tmp_path / f"{config_key('fake', configs[0])}.json").read_text())
    assert stored == record and record["status"] == "ok"
    # preemption: submitit calls checkpoint() and later runs the returned submission again
    requeued = TaskShard(task).checkpoint(configs)
    assert isinstance(requeued, submitit.helpers.DelayedSubmission)
    records = requeued.function(*requeued.args, **requeued.kwargs)
    assert calls == [1.0, 2.0] and [r["config"]["lr"] for r in records] == [1.0, 2.0]


def test_slurm_parameters_and_job_array_script(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="--partition"):
        slurm_parameters(partition=None)
    with pytest.raises(ValueError, match="array_parallelism"):
        slurm_parameters(partition="gpu", array_parallelism=0)
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeError, match="SLURM login node"):
        make_executor("slurm", tmp_path / "s", partition="gpu")
    # A fake sbatch/srun: the executor writes the job-array script and submits it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\n")
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n'
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{path}")
    executor = make_executor(
        "slurm", tmp_path / "s", partition="gpu", gpus_per_task=1, array_parallelism=2
    )
    spec = fake([])
    configs = [[spec.config({"lr": float(lr)})] for lr in range(6)]
    jobs = executor.map_array(TaskShard(SweepTask("ocr", "smollm2-135m")), configs)
    assert [j.job_id for j in jobs] == [f"4242_{i}" for i in range(6)]
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("--array=0-5%2", "--partition=gpu", "--gpus-per-task=1", "--signal=USR2@120"):
        assert f"#SBATCH {line}" in script
    with pytest.raises(ValueError, match="choose slurm or local"):
        make_executor("pbs", tmp_path)


def test_cli_executor_errors_come_before_any_work(tmp_path, monkeypatch, capsys):
    import argparse

    from extractive_lens.cli.run import add_parsers as add_run_parser
    from extractive_lens.cli.run import run_command

    parser = argparse.ArgumentParser(prog="extractive-lens")
    add_run_parser(parser.add_subparsers(dest="command", required=True))
    config = tmp_path / "sweep.yaml"
    config.write_text("experiment: ocr\ngrid: {lr: [0.001, 0.003]}\n")
    base = [
        "run",
        "sweep",
        "--model",
        "tiny",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "o"),
    ]
    assert run_command(parser.parse_args([*base, "--executor", "slurm"])) == 2
    assert "--partition" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    argv = [*base, "--executor", "slurm", "--partition", "gpu", "--gpus-per-task", "1"]
    assert run_command(parser.parse_args(argv)) == 2
    assert "SLURM login node" in capsys.readouterr().err
    assert run_command(parser.parse_args([*base, "--executor", "local", "--workers", "0"])) == 2
    assert "--workers" in capsys.readouterr().err
    assert not (tmp_path / "o" / "runs").exists()


class DeadJob:
    """A submitit job whose array task died (out of memory, node failure) after its first config."""

    def __init__(self, job_id, shard, task):
        self.job_id, self.shard, self.task = job_id, shard, task

    def done(self):
        return True

    def result(self):
        self.task(self.shard[0])  # finished and recorded before the task died
        raise RuntimeError("Job 7_0 (task: 0) failed: OUT_OF_MEMORY")


class DyingExecutor:
    def update_parameters(self, **kwargs):
        pass

    def map_array(self, fn, shards):
        return [DeadJob(f"7_{i}", shard, fn.task) for i, shard in enumerate(shards)]


def test_a_dead_array_task_reports_its_unfinished_configurations(tmp_path, monkeypatch):
    from extractive_lens.experiments import cluster

    monkeypatch.setitem(cluster._MODELS, "fake|None|None", FakeModel())  # "loaded" by name
    calls = []
    grid = {"lr": [1.0, 2.0, 3.0, 4.0]}
    result = sweep(
        fake(calls), grid, model="fake", out_dir=tmp_path, executor=DyingExecutor(), workers=2
    )
    assert sorted(calls) == [1.0, 2.0]  # the first configuration of each of the 2 shards
    statuses = {r["config"]["lr"]: r["status"] for r in result.records}
    assert statuses == {1.0: "ok", 2.0: "ok", 3.0: "error", 4.0: "error"}
    assert all(
        "OUT_OF_MEMORY" in r["error"] and "array task 7_" in r["error"] for r in result.errors
    )
    assert len(list((tmp_path / "errors").glob("*.json"))) == 2
