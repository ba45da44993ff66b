"""Exact corpus counts, task-gram probabilities and rank correlations (memorization)."""

from __future__ import annotations

import gzip
import json
import math
import random

import numpy as np
import pytest
import torch

from extractive_lens.memorization import (
    count_cooccurrences,
    item_pairs,
    memorization,
    rank_correlation,
    read_documents,
    task_gram_logprob,
)
from extractive_lens.worlds import CorpusConfig, build_corpus, make_world

VOCAB = ["ana", "rome", "paris", "city", "lives", "in", "new", "york", "is", "a"]


def _corpus(seed: int = 0, n: int = 60) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def _occurrences(tokens: list[str], gram: str) -> list[int]:
    g = gram.split()
    return [i for i in range(len(tokens) - len(g) + 1) if tokens[i : i + len(g)] == g]


PAIRS = [("ana", "rome"), ("new york", "city"), ("rome", "paris"), ("lives in", "new york"),
         ("ana", "ana rome")]  # fmt: skip


def test_document_counts_match_brute_force() -> None:
    docs = _corpus()
    table = count_cooccurrences(docs, PAIRS)
    for x, y in PAIRS:
        has = [(bool(_occurrences(d.split(), x)), bool(_occurrences(d.split(), y))) for d in docs]
        assert table.single[x] == sum(a for a, _ in has)
        assert table.pair(x, y) == sum(a and b for a, b in has)
        assert table.pair(x, y) <= table.single[x]
    assert table.n_documents == len(docs)
    assert table.n_tokens == sum(len(d.split()) for d in docs)


@pytest.mark.parametrize("window", [1, 3])
def test_window_counts_match_brute_force(window: int) -> None:
    docs = _corpus(1)
    table = count_cooccurrences(docs, PAIRS, unit="window", window=window)
    for x, y in PAIRS:
        want_x = want_xy = 0
        for d in docs:
            tokens = d.split()
            xs, ys = _occurrences(tokens, x), _occurrences(tokens, y)
            want_x += len(xs)
            want_xy += sum(any(abs(j - i) <= window for j in ys) for i in xs)
        assert table.single[x] == want_x
        assert table.pair(x, y) == want_xy


def test_world_corpus_counts_match_the_corpus_bookkeeping() -> None:
    world = make_world()
    corpus = build_corpus(world, CorpusConfig(repeats=3, mention_repeats=1))
    people = world.people[:12]
    pairs = [(p.name, p.city) for p in people]
    table = count_cooccurrences(corpus.texts(), pairs)
    truth = corpus.counts()
    for p in people:
        # A person and their city share only the person's lives_in sentences.
        assert table.pair(p.name, p.city) == truth[(p.name, p.city)]
        assert table.count(p.name) == sum(p.name in s.text.split() for s in corpus.sentences)
    held = [p for p in world.people if p.group == "heldout"]
    impl = item_pairs(world.first_hop().implications)
    table = count_cooccurrences(corpus.texts(), [q for item in impl for q in item])
    assert all(table.pairs[item[0]] == 0 for item in impl)  # OCR pairs never co-occur
    assert len(impl) == len(held)


def test_read_documents_streams_text_jsonl_and_gzip(tmp_path) -> None:  # noqa: ANN001
    docs = _corpus(2, 10)
    (tmp_path / "a.txt").write_text("\n".join(docs[:5]) + "\n\n")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"body": d}) for d in docs[5:8]))
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.write("\n".join(json.dumps({"body": d}) for d in docs[8:]))
    files = [tmp_path / "a.txt", tmp_path / "b.jsonl", tmp_path / "c.jsonl.gz"]
    got = list(read_documents(files, text_field="body"))
    assert got == docs
    streamed = count_cooccurrences(read_documents(files, text_field="body"), PAIRS)
    assert streamed == count_cooccurrences(docs, PAIRS)
    with pytest.raises(ValueError, match="string field 'text'"):
        list(read_documents(tmp_path / "b.jsonl"))
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: not a JSON line"):
        list(read_documents(tmp_path / "bad.jsonl"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(read_documents(tmp_path / "missing.txt"))


def test_task_gram_probabilities() -> None:
    table = count_cooccurrences(["ana rome", "ana paris", "ana rome x", "rome"],
                                [("ana", "rome"), ("ana", "paris"), ("rome", "ana")])  # fmt: skip
    exact = task_gram_logprob(table, [[("ana", "rome")], [("ana", "paris")]], alpha=0)
    assert exact.tolist() == pytest.approx([math.log(2 / 3), math.log(1 / 3)])
    smooth = task_gram_logprob(table, [[("ana", "rome"), ("rome", "ana")]], alpha=1, n_outcomes=4)
    want = (math.log(3 / 7) + math.log(3 / 7)) / 2  # (2+1)/(3+4) both ways
    assert smooth.item() == pytest.approx(want)
    table0 = count_cooccurrences(["ana"], [("ana", "rome")])
    with pytest.raises(ValueError, match="alpha > 0"):
        task_gram_logprob(table0, [[("ana", "rome")]], alpha=0)


def test_correlations_match_scipy() -> None:
    from scipy.stats import kendalltau, spearmanr

    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = 0.5 * x + rng.normal(size=30)
    y[3] = y[4]  # a tie
    c = rank_correlation(x, y, n_boot=300, seed=1)
    assert c.spearman == pytest.approx(spearmanr(x, y)[0], abs=1e-12)
    assert c.kendall == pytest.approx(kendalltau(x, y)[0], abs=1e-12)
    assert c.spearman_p == pytest.approx(spearmanr(x, y)[1], abs=1e-12)
    assert c.spearman_ci[0] < c.spearman < c.spearman_ci[1]
    assert c.kendall_ci[0] < c.kendall < c.kendall_ci[1]
    assert c.tau_distance == pytest.approx((1 - c.kendall) / 2)
    assert rank_correlation(x, y, n_boot=300, seed=1) == c  # seeded bootstrap
    assert math.isnan(rank_correlation([1, 1, 1, 1], [1, 2, 3, 4], n_boot=10).spearman)
    with pytest.raises(ValueError, match="equal length"):
        rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=">= 3 items"):
        rank_correlation([1, 2], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        rank_correlation([1, 2, -math.inf], [1, 2, 3])


def test_item_pairs_modes_and_errors() -> None:
    from extractive_lens.data import Example

    items = [Example("The home of Ana is", "Rome", entity="Ana"),
             Example("The home of New Bob is", "Paris", entity="New Bob")]  # fmt: skip
    assert item_pairs(items) == [[("ana", "rome")], [("new bob", "paris")]]
    grams = item_pairs(items, "ngrams", max_n=2)
    assert grams[0] == [("ana", "rome"), ("ana is", "rome"), ("of ana", "rome")]
    assert ("new bob", "paris") in grams[1] and ("home of", "paris") not in grams[1]
    with pytest.raises(ValueError, match="no entity"):
        item_pairs([Example("x is", "y")])
    with pytest.raises(ValueError, match="mode"):
        item_pairs(items, "embedding")
    with pytest.raises(ValueError, match="unit"):
        count_cooccurrences(["a"], [("a", "b")], unit="sentence")
    with pytest.raises(ValueError, match="no pairs"):
        count_cooccurrences(["a"], [])


def test_memorization_on_a_small_world_model() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from extractive_lens.delta import WeightDelta
    from extractive_lens.models import load_model
    from extractive_lens.worlds import build_tokenizer

    world = make_world()
    tok = build_tokenizer(world)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    model = load_model(hf_model=LlamaForCausalLM(cfg), tokenizer=tok)
    data = world.first_hop()
    corpus = build_corpus(world, CorpusConfig(repeats=2, mention_repeats=1))
    delta = WeightDelta.zeros_like(model)
    r = memorization(model, data, corpus, delta=delta, n_boot=20)
    assert r.phases == ["before", "after"]
    names = [s.name for s in r.splits]
    assert names[:3] == ["facts", "implications", "control_implications"]
    # The model's log-probability of single-token answers, checked by hand for one item.
    ex = data.facts[0]
    ids = tok(ex.prompt, add_special_tokens=True).input_ids
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0, -1].double()
    answer = tok(" " + ex.answer, add_special_tokens=False).input_ids
    assert len(answer) == 1
    want = torch.log_softmax(logits, -1)[answer[0]].item()
    assert r.splits[0].model["before"][0] == pytest.approx(want, abs=1e-5)
    assert r.splits[0].model["after"] == r.splits[0].model["before"]  # a zero delta
    known = next(s for s in r.splits if s.name == "known_implications")
    assert all(j == 2 for j in known.joint) and all(j == 0 for j in r.splits[1].joint)
    rows = r.table()
    assert {row["split"] for row in rows} >= {"all", "facts"} and len(rows) == 2 * 6
    with pytest.raises(ValueError, match="lacks splits"):
        memorization(model, data, corpus, splits=["nope"])


def test_cli_memorization_on_a_jsonl_corpus(tmp_path, capsys) -> None:  # noqa: ANN001
    from extractive_lens.cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "a b"}\n{"text": "c d"}\n')
    out = tmp_path / "out"
    argv = ["memorization", "--model", "tiny", "--corpus", str(corpus), "--lr", "0",
            "--quiet", "--n-boot", "5", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["experiment"] == "memorization" and saved["counts"]["n_documents"] == 2
    assert main(argv) == 2  # never overwrites silently
    assert "already holds results" in capsys.readouterr().err
    assert main([*argv[:4], str(tmp_path / "missing.txt"), *argv[5:-2]]) == 2
