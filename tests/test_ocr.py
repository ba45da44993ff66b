"""Experiment 1 (OCR verification) and the CLI, end to end on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from extractive_lens import first_hop, named_parameters, second_hop, verify_ocr
from extractive_lens.cli import main
from extractive_lens.delta import WeightDelta


@pytest.fixture(scope="module")
def result(tiny_llama):
    return verify_ocr(tiny_llama, first_hop(), lr=3e-3, epochs=3, progress=False)


def test_history_and_final_ranks(result):
    rows = result.table()
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert {"facts", "implications", "control_implications", "loss"} <= set(rows[-1])
    final = result.final()
    assert final["facts"] == pytest.approx(rows[-1]["facts"])  # same numbers, two code paths
    assert len(result.final_ranks["implications"]) == 20
    assert result.chance() == 9.5
    assert set(result.precheck) == {"known_implications", "known_hop"}
    assert result.model["architecture"] == "LlamaForCausalLM"


def test_training_lowers_fact_rank_and_leaves_model_intact(tiny_llama):
    before = {k: v.detach().clone() for k, v in named_parameters(tiny_llama).items()}
    result = verify_ocr(tiny_llama, second_hop(), lr=3e-3, epochs=15, progress=False)
    assert result.table()[0]["facts"] > 3
    assert result.final()["facts"] <= 0.5
    after = named_parameters(tiny_llama)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert "facts were" not in result.verdict()


def test_save_writes_provenance_and_never_overwrites(result, tmp_path, tiny_llama):
    out = result.save(tmp_path / "run")
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["seed"] == 0 and saved["model"]["n_layers"] == 2
    assert "torch" in saved["provenance"]["versions"]
    assert saved["final"] == pytest.approx(result.final())
    delta = WeightDelta.load(out / "delta.safetensors", tiny_llama)
    assert all(torch.equal(delta[k], result.delta[k]) for k in delta)
    with pytest.raises(FileExistsError, match="overwrite"):
        result.save(tmp_path / "run")


def test_cli_ocr_on_tiny_model(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "ocr",
        "--model",
        "tiny",
        "--dataset",
        "first_hop",
        "--epochs",
        "1",
        "--lr",
        "1e-3",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "first_hop" in printed and "implications" in printed
    assert (out / "first_hop" / "results.json").is_file()
    assert main(args) == 2  # the directory exists now: refused, not overwritten
    assert "overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
