"""Sweeps (resume, aggregation, executors, errors), config files and ``extractive-lens run``."""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from extractive_lens.cli.run import add_parsers as add_run_parser
from extractive_lens.cli.run import run_command
from extractive_lens.experiments.config import check_config, load_config, parse_overrides
from extractive_lens.experiments.registry import EXPERIMENTS, Experiment, get_experiment
from extractive_lens.experiments.sweep import config_key, grid_configs, load_sweep, sweep

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass(frozen=True)
class FakeResult:
    lr: float
    seed: int

    def summary(self):
        return {"score": self.lr * 10 + self.seed, "const": 1.0}

    def table(self):
        return [{"row": "a", "value": self.lr + self.seed}]

    def to_dict(self):
        return {"lr": self.lr, "seed": self.seed}


def make_fake(calls: list, fail_on=None, diverge_on=None) -> Experiment:
    def run(model, config, progress):
        if fail_on is not None and (config["lr"], config["seed"]) == fail_on:
            raise KeyboardInterrupt  # an interruption in the middle of the sweep
        if diverge_on is not None and (config["lr"], config["seed"]) == diverge_on:
            raise FloatingPointError("the loss is nan")
        calls.append((config["lr"], config["seed"]))
        return FakeResult(config["lr"], config["seed"])

    return Experiment("fake", run, {"lr": 1.0, "epochs": 1, "seed": 0, "name": "x"})


GRID = {"lr": [1.0, 2.0], "seed": [0, 1, 2]}


class FakeModel:
    """Stands in for a loaded model (the fake experiment never uses it)."""

    class cfg:  # noqa: N801
        model_name = "fake-model"


FAKE = FakeModel()


def test_sweep_aggregates_mean_and_spread_over_seeds(tmp_path):
    calls = []
    result = sweep(make_fake(calls), GRID, model=FAKE, out_dir=tmp_path)
    assert len(calls) == 6 and result.n_resumed == 0
    rows = result.table()
    assert [r["lr"] for r in rows] == [1.0, 2.0] and "seed" not in rows[0]
    assert rows[0]["n"] == 3 and rows[0]["failed"] == 0
    assert rows[0]["score"]["mean"] == pytest.approx(11.0)  # 10 + mean(0, 1, 2)
    assert rows[0]["score"]["std"] == pytest.approx(1.0)
    assert rows[1]["const"]["std"] == 0.0
    assert result.best("score")["lr"] == 1.0
    assert result.best("score", minimize=False)["lr"] == 2.0
    seeds = result.seed_table(lr=2.0)
    assert seeds[0]["value"]["mean"] == pytest.approx(3.0) and seeds[0]["row"] == "a"
    assert "11.00 ± 1.00" in result.markdown()
    assert len(result.figure().data) == 2  # one heatmap per metric
    for name in ("summary.json", "table.md", "figure.html", "sweep.json"):
        assert (tmp_path / name).is_file()
    assert len(load_sweep(tmp_path)) == 6


def test_resumed_sweep_skips_finished_configurations(tmp_path):
    calls = []
    with pytest.raises(KeyboardInterrupt):
        sweep(make_fake(calls, fail_on=(2.0, 0)), GRID, model=FAKE, out_dir=tmp_path)
    assert calls == [(1.0, 0), (1.0, 1), (1.0, 2)]  # interrupted at the 4th configuration
    assert len(list((tmp_path / "runs").glob("*.json"))) == 3
    calls.clear()
    result = sweep(make_fake(calls), GRID, model=FAKE, out_dir=tmp_path)
    assert calls == [(2.0, 0), (2.0, 1), (2.0, 2)]  # only the unfinished ones
    assert result.n_resumed == 3 and len(result.records) == 6
    calls.clear()
    bigger = {"lr": [1.0, 2.0], "seed": [0, 1, 2, 3]}
    result = sweep(make_fake(calls), bigger, model=FAKE, out_dir=tmp_path)
    assert calls == [(1.0, 3), (2.0, 3)] and result.n_resumed == 6
    calls.clear()
    sweep(make_fake(calls), GRID, model=FAKE, out_dir=tmp_path, fixed={"epochs": 2})
    assert len(calls) == 6  # another fixed value is another configuration
    with pytest.raises(ValueError, match="another directory"):
        sweep(make_fake(calls), GRID, model="other-model", out_dir=tmp_path)  # never loaded


def test_diverged_runs_are_recorded_and_not_retried(tmp_path):
    calls = []
    result = sweep(make_fake(calls, diverge_on=(1.0, 1)), GRID, model=FAKE, out_dir=tmp_path)
    assert len(calls) == 5
    assert result.table()[0]["n"] == 2 and result.table()[0]["failed"] == 1
    failed = [r for r in result.records if r["status"] == "failed"]
    assert len(failed) == 1 and "nan" in failed[0]["error"]
    calls.clear()
    sweep(make_fake(calls), GRID, model=FAKE, out_dir=tmp_path)
    assert calls == []
    sweep(make_fake(calls), GRID, model=FAKE, out_dir=tmp_path, retry_failed=True)
    assert calls == [(1.0, 1)]


def test_executors_are_pluggable(tmp_path):
    calls = []
    seen = []

    def reversed_executor(fn, configs):  # a "cluster" returning results in another order
        seen.extend(configs)
        return [fn(c) for c in reversed(configs)]

    result = sweep(
        make_fake(calls), GRID, model=FAKE, out_dir=tmp_path / "a", executor=reversed_executor
    )
    assert len(seen) == 6 and calls[0] == (2.0, 2)
    assert [r["config"]["seed"] for r in result.records][:3] == [0, 1, 2]  # grid order kept
    with ThreadPoolExecutor(max_workers=2) as pool:
        pooled = sweep(make_fake([]), GRID, model=FAKE, out_dir=tmp_path / "b", executor=pool)
    assert pooled.table() == result.table()
    with pytest.raises(RuntimeError, match="no result"):
        sweep(
            make_fake([]), GRID, model=FAKE, out_dir=tmp_path / "c", executor=lambda fn, configs: []
        )


def test_bad_grids_are_refused(tmp_path):
    fake = make_fake([])
    with pytest.raises(ValueError, match=r"unknown config keys.*'learning_rate'.*allowed"):
        sweep(fake, {"learning_rate": [1.0]}, model=FAKE, out_dir=tmp_path)
    with pytest.raises(ValueError, match="non-empty list"):
        grid_configs(fake, {"lr": []})
    with pytest.raises(ValueError, match="non-empty list"):
        grid_configs(fake, {"lr": 1.0})
    with pytest.raises(ValueError, match="non-empty mapping"):
        grid_configs(fake, {})
    with pytest.raises(ValueError, match="both swept"):
        grid_configs(fake, {"lr": [1.0]}, fixed={"lr": 2.0})
    with pytest.raises(ValueError, match="must be a number"):
        grid_configs(fake, {"lr": ["fast"]})
    with pytest.raises(ValueError, match="repeats"):
        grid_configs(fake, {"lr": [1.0, 1]})
    with pytest.raises(ValueError, match="unknown experiment"):
        get_experiment("nope")
    assert not list(tmp_path.iterdir())  # nothing written for a refused sweep


def test_config_keys_hash_and_coercion(tmp_path):
    spec = EXPERIMENTS["ocr"]
    config = spec.config({"lr": "1e-4", "epochs": 2.0})  # YAML reads 1e-4 as a string
    assert config["lr"] == 1e-4 and config["epochs"] == 2 and isinstance(config["epochs"], int)
    assert config_key("ocr", config) == config_key("ocr", dict(reversed(config.items())))
    assert config_key("ocr", config) != config_key("ocr", {**config, "seed": 1})
    with pytest.raises(ValueError, match="integer"):
        spec.config({"epochs": 2.5})
    with pytest.raises(ValueError, match="true or false"):
        spec.config({"paraphrases": "maybe"})
    assert check_config("x", {}, {"a": 1}) == {"a": 1}
    (tmp_path / "c.yaml").write_text("lr: 1e-4\norders: [joint]\n")
    (tmp_path / "c.json").write_text('{"lr": 0.001}')
    (tmp_path / "c.txt").write_text("lr: 1")
    assert load_config(tmp_path / "c.yaml") == {"lr": 1e-4, "orders": ["joint"]}
    assert load_config(tmp_path / "c.json") == {"lr": 0.001}
    with pytest.raises(ValueError, match=r"\.json, \.yaml"):
        load_config(tmp_path / "c.txt")
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    assert parse_overrides(["lr=3e-3", "orders=[joint, facts_first]"]) == {
        "lr": 3e-3,
        "orders": ["joint", "facts_first"],
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["lr"])


def test_real_ocr_sweep_on_the_tiny_model(tiny_llama, tmp_path):
    grid = {"lr": [1e-3, 3e-3], "seed": [0]}
    result = sweep("ocr", grid, model=tiny_llama, out_dir=tmp_path, fixed={"epochs": 1})
    assert {"facts", "implications", "control_implications", "ocr_effect"} <= set(result.metrics())
    rows = result.table(["facts", "implications"])
    assert [r["lr"] for r in rows] == [1e-3, 3e-3] and rows[0]["n"] == 1
    record = result.records[0]
    assert record["result"]["experiment"] == "ocr" and "capability" in record["result"]
    again = sweep("ocr", grid, model=tiny_llama, out_dir=tmp_path, fixed={"epochs": 1})
    assert again.n_resumed == 2 and again.table() == result.table()


def cli(argv):
    parser = argparse.ArgumentParser(prog="extractive-lens")
    add_run_parser(parser.add_subparsers(dest="command", required=True))
    return run_command(parser.parse_args(["run", *argv]))


def test_cli_run_experiment_and_sweep(tmp_path, capsys):
    config = tmp_path / "ocr.yaml"
    config.write_text("dataset: second_hop\nlr: 3e-3\nepochs: 1\n")
    out = tmp_path / "ocr"
    assert (
        cli(["ocr", "--model", "tiny", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    )
    printed = capsys.readouterr().out
    assert "second_hop" in printed and "pre-check" in printed
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["lr"] == 3e-3 and saved["dataset"] == "second_hop"
    assert cli(["ocr", "--model", "tiny", "--config", str(config), "--out", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert cli(["grafting", "--model", "tiny", "--set", "learning_rate=1"]) == 2
    assert "unknown config keys" in capsys.readouterr().err
    assert cli(["ordering", "--list"]) == 0
    assert "finetune_epochs" in capsys.readouterr().out

    sweep_config = tmp_path / "sweep.json"
    sweep_config.write_text(
        json.dumps(
            {
                "experiment": "ocr",
                "grid": {"lr": [1e-3, 3e-3]},
                "fixed": {"epochs": 1, "dataset": "first_hop"},
            }
        )
    )
    args = [
        "sweep",
        "--model",
        "tiny",
        "--config",
        str(sweep_config),
        "--out",
        str(tmp_path / "sweep"),
        "--quiet",
    ]
    assert cli(args) == 0
    assert "2 to run" in capsys.readouterr().out
    assert cli(args) == 0
    printed = capsys.readouterr().out
    assert "2 already done, 0 to run" in printed and "| lr |" in printed
    sweep_config.write_text(json.dumps({"experiment": "ocr"}))
    assert cli(args) == 2


def test_process_pools_need_a_model_name(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1) as pool, pytest.raises(ValueError, match="name"):
        sweep(make_fake([]), GRID, model=FAKE, out_dir=tmp_path / "p", executor=pool)
    assert not (tmp_path / "p").exists()
