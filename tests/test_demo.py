"""The main job (extractive_lens.demo.run_demo): outputs, summary, never overwriting.

``tiny_demo`` runs the demo once per session on the tiny grouped-query model; test_plots and
test_report build their figures and reports from the same real results.
"""

from __future__ import annotations

import json

import pytest
import torch

from extractive_lens.demo import DemoResult, format_summary_table, run_demo

_CACHE: dict[str, tuple[DemoResult, str]] = {}


def tiny_demo(model, tmp_path_factory) -> tuple[DemoResult, str]:
    """One real demo run on a tiny model (2 epochs, lr 3e-3), shared by the test modules."""
    if "demo" not in _CACHE:
        printed: list[str] = []
        out = tmp_path_factory.mktemp("demo") / "run"
        result = run_demo(
            "tiny-gqa",
            out,
            model=model,
            epochs=2,
            lr=3e-3,
            counterfactuals=3,
            top_k=6,
            progress=False,
            echo=printed.append,
        )
        _CACHE["demo"] = (result, "\n".join(printed))
    return _CACHE["demo"]


@pytest.fixture(scope="module")
def demo(tiny_llama, tmp_path_factory):
    return tiny_demo(tiny_llama, tmp_path_factory)


def test_demo_writes_every_output(demo):
    result, _ = demo
    out = result.out_dir
    assert result.report_path == out / "report.html" and result.report_path.stat().st_size > 1e6
    for name in ("first_hop", "second_hop"):
        d = out / name
        for f in ("results.json", "delta.safetensors", "scores.json", "scores.safetensors"):
            assert (d / f).is_file(), f"{d / f} missing"
        assert (d / "graph.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"] == json.loads(json.dumps(result.rows()))
    assert summary["config"]["lr"] == 3e-3 and summary["config"]["epochs"] == 2
    assert summary["config"]["score_seed"] == 3 and summary["config"]["seed"] == 0
    assert "versions" in summary["provenance"]
    assert summary["verdict"] == result.verdict()


def test_saved_scores_and_graph_match_the_results(demo):
    from safetensors.torch import load_file

    result, _ = demo
    run = result["first_hop"]
    saved = load_file(str(result.out_dir / "first_hop" / "scores.safetensors"))
    for role, s in run.scores.roles().items():
        torch.testing.assert_close(saved[f"{role}.mlp"], s.mlp.float())
        torch.testing.assert_close(saved[f"{role}.heads"], s.heads.float())
        torch.testing.assert_close(saved[f"{role}.kv_heads"], s.kv_heads.float())
    scores = json.loads((result.out_dir / "first_hop" / "scores.json").read_text())
    for role, c in run.canonical.items():
        assert scores["canonical"][role]["labels"] == list(c.labels)
        torch.testing.assert_close(
            torch.tensor(scores["canonical"][role]["mlp"]), c.mlp.float(), check_dtype=False
        )
    graph = json.loads((result.out_dir / "first_hop" / "graph.json").read_text())
    assert graph == json.loads(json.dumps(run.graph.to_dict()))
    assert {n["role"] for n in graph["nodes"]} == {"upstream", "informative", "downstream"}


def test_summary_table_has_fact_implication_and_control_ranks(demo):
    result, printed = demo
    rows = result.rows()
    assert [r["dataset"] for r in rows] == ["first_hop", "second_hop"]
    for row, run in zip(rows, result.runs, strict=True):
        final = run.ocr.final()
        assert row["fact rank"] == pytest.approx(final["facts"])
        assert row["implication rank"] == pytest.approx(final["implications"])
        assert row["control rank"] == pytest.approx(final["control_implications"])
        assert row["chance"] == 9.5
        assert row["OCR?"] in {"yes", "no", "n/a"}
    table = format_summary_table(rows)
    assert table in printed
    first = rows[0]
    assert f"{first['fact rank']:.2f}" in table.splitlines()[2]
    assert f"{first['control rank']:.2f}" in table.splitlines()[2]
    assert f"report: {result.report_path}" in printed
    assert "judged against the deranged-pairing control" in printed


def test_demo_never_silently_overwrites(demo, tiny_llama):
    result, _ = demo
    before = (result.out_dir / "summary.json").read_text()
    with pytest.raises(FileExistsError, match="overwrite"):
        run_demo("tiny-gqa", result.out_dir, model=tiny_llama, progress=False, echo=None)
    assert (result.out_dir / "summary.json").read_text() == before


def test_demo_overwrite_replaces_an_existing_directory(tiny_mha, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "stale.txt").write_text("old results")
    result = run_demo(
        "tiny-mha",
        out,
        overwrite=True,
        model=tiny_mha,
        datasets=("first_hop",),
        epochs=0,
        counterfactuals=1,
        progress=False,
        echo=None,
    )
    assert not (out / "stale.txt").exists()
    assert (out / "report.html").is_file() and [r.dataset for r in result.runs] == ["first_hop"]
    assert result["first_hop"].canonical["informative"].kv_heads is None  # multi-head attention


@pytest.mark.slow
def test_demo_on_the_tiny_model_with_defaults(tmp_path):
    # Wall time is a benchmark matter, not a test's: this checks the defaults run end to end.
    result = run_demo("tiny", tmp_path / "demo", progress=False, echo=None)
    assert result.config["lr"] == 1e-4 and result.config["epochs"] == 8
    assert (tmp_path / "demo" / "report.html").is_file()


@pytest.mark.slow
def test_demo_on_smollm2(tmp_path, capsys):
    # One dataset and two counterfactuals keep CI's cost down; `make demo` runs the full job.
    result = run_demo(
        "smollm2-135m",
        tmp_path / "demo",
        progress=False,
        datasets=("first_hop",),
        counterfactuals=2,
    )
    printed = capsys.readouterr().out
    assert "first_hop" in printed and "report:" in printed
    assert result.rows()[0]["fact rank"] < 1.0  # METHOD.md §6 pilot: 0.0 at lr 1e-4
