"""Guards that keep results honest: divergence is never a perfect score, the API checks what the
CLI checks before any work, deltas know the weights they came from, user data gets a control."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

import extractive_lens.training as training
from extractive_lens import first_hop, tiny_model, verify_ocr
from extractive_lens.cli import main
from extractive_lens.data import (
    CONTROL,
    Example,
    OCRDataset,
    grouped_control,
    load_dataset_file,
    with_control,
)
from extractive_lens.delta import WeightDelta
from extractive_lens.experiments import sweep
from extractive_lens.models import model_identity, weights_fingerprint
from extractive_lens.training import DivergedError

# --------------------------------------------------------------------------- divergence


def test_a_destroyed_model_is_reported_as_diverged_not_as_perfect(tiny_llama):
    with pytest.raises(DivergedError, match="collapsed"):
        verify_ocr(tiny_llama, first_hop(), lr=1e9, epochs=1, progress=False)
    # without eval sets the training logits themselves are checked, also after the last step
    facts = first_hop().facts[:8]
    with pytest.raises(DivergedError, match="logits at the answer tokens collapsed"):
        training.finetune(tiny_llama, facts, lr=1e9, epochs=1, progress=False)


def test_cli_reports_divergence_and_fails(capsys):
    rc = main(["ocr", "--model", "tiny", "--lr", "1e9", "--epochs", "1", "--quiet"])
    assert rc == 3
    assert "diverged" in capsys.readouterr().err


def test_a_sweep_records_a_diverged_run_as_failed(tiny_llama, tmp_path):
    result = sweep(
        "ocr",
        {"lr": [1e9]},
        model=tiny_llama,
        fixed={"dataset": "first_hop", "epochs": 1},
        out_dir=tmp_path / "sweep",
    )
    (record,) = result.records
    assert record["status"] == "failed"
    assert "diverged" in record["error"] and "collapsed" in record["error"]


def test_a_diverged_demo_says_so_in_summary_and_report(tiny_llama, tmp_path):
    from dataclasses import replace

    from extractive_lens.demo import run_demo
    from extractive_lens.report import build_report

    with pytest.raises(DivergedError, match="every dataset of the demo diverged"):
        run_demo(model=tiny_llama, out_dir=tmp_path / "demo", lr=1e9, epochs=1, progress=False)
    notes = json.loads((tmp_path / "demo" / "summary.json").read_text())["notes"]
    assert len(notes) == 2 and all("DIVERGED" in n for n in notes)
    demo = run_demo(
        model=tiny_llama,
        out_dir=tmp_path / "ok",
        datasets=["first_hop"],
        epochs=1,
        counterfactuals=1,
        progress=False,
        echo=None,
    )
    flagged = replace(demo, notes=("second_hop: DIVERGED, no results: collapsed",))
    assert ("Notes", list(flagged.notes)) in build_report(flagged).paragraphs
    assert "second_hop: DIVERGED" in flagged.summary()


# --------------------------------------------------------------------------- checks before work


def _count_finetunes(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = training.finetune

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("extractive_lens.experiments.ocr.finetune", counting)
    return calls


def test_rerunning_the_readme_quickstart_fails_before_training(tiny_llama, tmp_path, monkeypatch):
    calls = _count_finetunes(monkeypatch)
    out = tmp_path / "runs" / "first_hop"

    def quickstart():  # README "Quickstart (Python)", on the tiny model
        return verify_ocr(tiny_llama, first_hop(), lr=3e-3, epochs=1, out=out, progress=False)

    first = quickstart()
    assert (out / "results.json").exists() and (out / "delta.safetensors").exists()
    saved = json.loads((out / "results.json").read_text())
    assert saved["model"]["fingerprint"] == first.model["fingerprint"]
    assert len(calls) == 1
    with pytest.raises(FileExistsError, match="already holds results"):
        quickstart()
    assert len(calls) == 1  # refused before any training
    again = verify_ocr(
        tiny_llama, first_hop(), lr=3e-3, epochs=1, out=out, overwrite=True, progress=False
    )
    assert again.final() == first.final()


def test_dataset_errors_name_the_split_before_training(tiny_llama, monkeypatch):
    calls = _count_finetunes(monkeypatch)
    ds = first_hop()
    bad = OCRDataset(
        name="bad",
        facts=ds.facts,
        implications=(*ds.implications[:-1], Example("The people in X speak", "Klingon")),
        fact_options=ds.fact_options,
        implication_options=ds.implication_options,
    )
    with pytest.raises(ValueError, match="split 'implications', example 19 .*'Klingon'"):
        verify_ocr(tiny_llama, bad, lr=3e-3, epochs=1, progress=False)
    assert not calls


# --------------------------------------------------------------------------- model fingerprints


def test_a_delta_from_same_shaped_other_weights_is_refused(tmp_path):
    a, b = tiny_model("llama", seed=0), tiny_model("llama", seed=1)
    fa, fb = weights_fingerprint(a), weights_fingerprint(b)
    assert fa != fb and fa == weights_fingerprint(tiny_model("llama", seed=0))
    assert model_identity(a)["fingerprint"] == fa
    delta = training.finetune(a, first_hop().facts[:8], lr=1e-3, epochs=1, progress=False).delta
    assert delta.identity["fingerprint"] == fa
    path = delta.save(tmp_path / "delta.safetensors")
    assert WeightDelta.load(path, a).equal(delta)
    with pytest.raises(ValueError, match=f"fingerprint {fa}.*fingerprint {fb}"):
        WeightDelta.load(path, b)
    assert WeightDelta.load(path, b, allow_other_weights=True).equal(delta)
    with delta.applied(a):  # the finetuned weights are other weights too
        assert weights_fingerprint(a) != fa
        on_top = training.finetune(a, first_hop().facts[8:16], lr=1e-3, epochs=1, progress=False)
    assert weights_fingerprint(a) == fa
    # deltas made on the same weights keep the fingerprint; a chain's sum cannot know its base
    assert (delta + delta).identity["fingerprint"] == fa
    assert on_top.delta.identity["fingerprint"] not in (fa, None)
    assert "fingerprint" not in (delta + on_top.delta).identity
    with pytest.raises(ValueError, match="different models"):
        delta + WeightDelta.zeros_like(tiny_model("gpt2", seed=0))


def test_fingerprint_sees_a_change_to_one_head_and_ignores_the_device():
    model = tiny_model("llama", seed=0)
    before = weights_fingerprint(model)
    from extractive_lens.components import Component

    zero = WeightDelta.zeros_like(model)
    one_head = (zero + WeightDelta({n: torch.ones_like(t) for n, t in zero.items()})).restrict(
        components=[Component(1, "head", 3)], model=model
    )
    with one_head.applied(model, scale=1e-3):
        assert weights_fingerprint(model) != before
    assert weights_fingerprint(model) == before


# --------------------------------------------------------------------------- user controls


def _check_control(implications, control):
    assert [c.prompt for c in control] == [i.prompt for i in implications]
    assert all(c.answer != i.answer for c, i in zip(control, implications, strict=True))
    assert Counter(c.answer for c in control) == Counter(i.answer for i in implications)


def test_a_user_file_with_repeated_answers_gets_a_valid_control(tiny_llama, tmp_path):
    sections = ["strings", "woodwinds", "brass", "percussion", "keyboards"]
    instruments = ["violin", "viola", "flute", "oboe", "trumpet", "horn", "drum", "cello"]
    instruments += ["piano", "organ"]
    # items 0 and 7 share "strings", so the shift-by-7 pairing is no derangement here
    section_of = dict(zip(instruments, [0, 0, 1, 1, 2, 2, 3, 0, 4, 4], strict=True))
    people = ["Ann Lee", "Bo Ng", "Cy Wu", "Di Fox", "Ed Orr", "Flo Kay", "Gus Li", "Hal Po"]
    people += ["Ida Ma", "Jo Xu"]
    path = tmp_path / "orchestra.jsonl"
    lines = [{"name": "orchestra", "options": {"facts": instruments, "implications": sections}}]
    for person, inst in zip(people, instruments, strict=True):
        lines.append({"split": "facts", "prompt": f"{person} plays the", "answer": inst})
        lines.append(
            {
                "split": "implications",
                "prompt": f"{person} sits in the orchestra's section of",
                "answer": sections[section_of[inst]],
            }
        )
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ds = load_dataset_file(path)
    assert CONTROL not in ds.splits()  # the file is read as written ...
    full = with_control(ds)  # ... and experiments add the control
    control = full.split(CONTROL)
    assert "grouped-pairing control" in control.description  # the shift pairing fails here
    _check_control(ds.implications, control.examples)
    result = verify_ocr(tiny_llama, ds, lr=3e-3, epochs=1, progress=False)
    assert len(result.final_ranks[CONTROL]) == 10
    assert "grouped-pairing control" in result.verdict()
    assert result.to_dict()["control"] == control.description


@pytest.mark.parametrize("answers", ["aabbc", "aaabbb", "abcabcabcd", "aabbccddee", "ab"])
def test_grouped_control_is_a_derangement_of_answers(answers):
    examples = [Example(f"p{i}", a) for i, a in enumerate(answers)]
    _check_control(examples, grouped_control(examples))


def test_no_control_when_one_answer_is_on_most_items(tiny_llama):
    examples = [Example(f"p{i}", a) for i, a in enumerate("aaab")]
    with pytest.raises(ValueError, match="'a' belongs to 3 of 4 items"):
        grouped_control(examples)
    ds = OCRDataset("skewed", examples, examples, ("a", "b"), ("a", "b"))
    assert with_control(ds) is ds
