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
        for f in ("results.json", "scores.json", "scores.safetensors"):
            assert (d / f).is_file(), f"{d / f} missing"
        assert not (d / "delta.safetensors").exists()  # deltas only with save_deltas
        assert (d / "graph.json").is_file()
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert size < 50e6  # by default nothing large is written (deltas only with save_deltas)
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
    for role, entries in scores["top"].items():  # largest |scores| with bootstrap intervals
        c = run.canonical[role]
        assert [e["score"] for e in entries] == [v for _, _, v in c.top(10, absolute=True)]
        for e in entries:
            lo, hi = e["interval_95"]
            assert lo <= hi
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
        save_deltas=True,
    )
    assert not (out / "stale.txt").exists()
    assert (out / "first_hop" / "delta.safetensors").is_file()
    assert (out / "report.html").is_file() and [r.dataset for r in result.runs] == ["first_hop"]
    assert result["first_hop"].canonical["informative"].kv_heads is None  # multi-head attention


def test_report_rebuilds_from_a_saved_demo_without_recomputing(demo, tmp_path, monkeypatch):
    from extractive_lens import cli
    from extractive_lens.demo_io import load_demo
    from extractive_lens.report import build_report

    result, _ = demo
    # nothing may be recomputed: any finetune or score call fails the test
    import extractive_lens.scores.engine as engine
    import extractive_lens.training as training

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(engine, "compute", boom)
    monkeypatch.setattr(training, "finetune", boom)
    loaded = load_demo(result.out_dir)
    assert loaded.verdict() == result.verdict() and loaded.rows() == result.rows()
    original, rebuilt = build_report(result), build_report(loaded)
    assert [f.name for f in rebuilt.figures] == [f.name for f in original.figures]
    assert [f.caption for f in rebuilt.figures] == [f.caption for f in original.figures]
    assert rebuilt.paragraphs == original.paragraphs
    target = tmp_path / "rebuilt.html"
    assert cli.main(["report", str(result.out_dir), "--out", str(target)]) == 0
    assert target.stat().st_size > 1e6
    assert cli.main(["report", str(result.out_dir)]) == 2  # report.html exists: not replaced
    assert cli.main(["report", str(tmp_path)]) == 2  # not a demo directory


def test_cli_demo_defaults_are_the_library_defaults():
    import inspect

    from extractive_lens import cli, demo

    args = cli.build_parser().parse_args(["demo"])
    assert args.lr == demo.DEMO_LR == inspect.signature(run_demo).parameters["lr"].default
    assert not args.save_deltas


def test_verdict_words_match_the_numbers():
    from extractive_lens.delta import WeightDelta
    from extractive_lens.experiments.ocr import OCRResult

    def verdict(impl, ctrl):
        ranks = {"facts": [0] * len(impl), "implications": impl, "control_implications": ctrl}
        n = {k: 20 for k in ranks}
        return OCRResult("d", {}, {}, (), {}, ranks, n, WeightDelta({})).verdict()

    ctrl = [10, 12, 8, 9, 11, 10, 9, 12, 10, 9]
    weak = [10, 2, 8, 9, 11, 2, 9, 12, 0, 9]  # 2.8 ± 1.44 better: under the 2-SE bar
    assert verdict(weak, ctrl).endswith(
        " - no significant OCR: implications rank 2.8 ± 1.4 better than the control, "
        "not significant at 2 SE."
    )
    strong = verdict([1, 3, 0, 1, 2, 0, 0, 2, 1, 0], ctrl)
    assert strong.endswith(
        " - OCR: implications rank 9.0 ± 0.2 better than the control (significant at 2 SE)."
    )
    assert "worse than the control" in verdict([c + 1 for c in ctrl[:-1]] + [ctrl[-1] + 3], ctrl)


@pytest.mark.slow
def test_demo_on_the_tiny_model_with_defaults(tmp_path):
    # Wall time is a benchmark matter, not a test's: this checks the defaults run end to end.
    result = run_demo("tiny", tmp_path / "demo", progress=False, echo=None)
    assert result.config["lr"] == 3e-4 and result.config["epochs"] == 8
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
    assert result.rows()[0]["fact rank"] < 1.0  # docs/results.md §1: 0.00 at lr 3e-4
