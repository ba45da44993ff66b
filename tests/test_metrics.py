"""Tokenisation, ranks and the logit margin: exact semantics, batch and padding invariance."""

from __future__ import annotations

import pytest
import torch

from extractive_lens.data import Example, first_hop
from extractive_lens.families import FAMILIES, REQUIRED
from extractive_lens.metrics import (
    collapsed,
    encode,
    logit_margin,
    mean_rank,
    option_logits,
    ranks,
    ranks_from_logits,
)
from extractive_lens.models import tiny_model


def test_encode_marks_answer_tokens_only(tiny_llama):
    tok = tiny_llama.tokenizer
    batch = encode(tiny_llama, [Example("Grace Miller lives in", "Buenos Aires"), ("Hi", "Tokyo")])
    prompt = tok("Grace Miller lives in").input_ids
    answer = tok(" Buenos Aires", add_special_tokens=False).input_ids
    row = batch.input_ids[0, : len(prompt) + len(answer)].tolist()
    assert row == prompt + answer
    assert batch.last_prompt.tolist()[0] == len(prompt) - 1
    targets = batch.labels[0][batch.labels[0] != -100].tolist()
    assert targets == answer  # the loss sees exactly the answer tokens
    assert batch.attention_mask[1].sum() == len(tok("Hi").input_ids) + 1  # " Tokyo" is 1 token
    forced = encode(tok, [("Hi", "Tokyo")], prepend_bos=True)
    assert forced.input_ids[0, 0] == tok.bos_token_id


def test_ranks_from_logits_semantics():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 5.0], [1.0, 1.0, 0.0]])
    # rank = number of other options scoring at least as high: ties count against the answer
    assert ranks_from_logits(logits, torch.tensor([0, 2, 1])).tolist() == [0, 1, 1]
    assert ranks_from_logits(logits, torch.tensor([1, 0, 2])).tolist() == [2, 2, 2]
    margin = logit_margin(logits, torch.tensor([0, 2, 1]))
    torch.testing.assert_close(margin, torch.tensor([1.0, 5 - 10 / 3, 1 - 2 / 3]))


def test_all_tied_or_broken_logits_give_the_worst_rank_not_the_best():
    n = 20
    answers = torch.arange(4) % n
    tied = torch.zeros(4, n)
    assert ranks_from_logits(tied, answers).tolist() == [n - 1] * 4
    broken = torch.randn(4, n)
    broken[0, 5] = float("nan")
    broken[1, answers[1]] = float("nan")
    broken[2, 0] = float("inf")
    assert ranks_from_logits(broken, answers)[:3].tolist() == [n - 1] * 3
    assert collapsed(tied).all() and collapsed(broken)[:3].all()
    healthy = torch.randn(4, n)
    assert not collapsed(healthy).any()
    # a spread far below the logits' own resolution is a collapse; one logit apart is not
    assert collapsed(torch.full((1, n), 1e4) + torch.arange(n) * 1e-4).item()
    assert not collapsed(torch.full((1, n), 1e4) + torch.arange(n) * 1.0).item()


def test_batch_size_and_padding_never_change_a_number(tiny, precision):
    data = first_hop()
    examples = list(data.implications[:6]) + [
        Example(
            "A much longer prompt about someone who, as everyone knows, lives somewhere and "
            "whose people speak",
            data.implications[0].answer,
        )
    ]
    opts = data.implication_options
    one = option_logits(tiny, examples, opts, batch_size=1)
    many = option_logits(tiny, examples, opts, batch_size=32)
    # other batch shapes reorder the forward's reductions: rounding at the logits' own scale
    precision.check(one, many, eps=precision.eps(tiny), scale=many.abs().max())
    assert torch.equal(
        ranks(tiny, examples, opts, batch_size=1), ranks(tiny, examples, opts, batch_size=7)
    )


def test_mean_rank_in_range_and_validates(tiny_llama):
    data = first_hop()
    value = mean_rank(tiny_llama, data.facts, data.fact_options)
    assert 0 <= value <= len(data.fact_options) - 1
    with pytest.raises(ValueError, match="Atlantis"):
        mean_rank(tiny_llama, [("X lives in", "Atlantis")], data.fact_options)
    with pytest.raises(ValueError, match="empty"):
        mean_rank(tiny_llama, [], data.fact_options)


@pytest.mark.parametrize("family", sorted({*REQUIRED, "falcon", "stablelm-parallel"}))
def test_batch_size_and_padding_never_change_logits_in_any_family(family):
    """Right padding and batch size leave every option logit alone, whatever the architecture
    (position ids, attention masks, ALiBi-free rotary or learned positions)."""
    kv = 2 if FAMILIES[family].gqa else None
    model = tiny_model(family, n_layers=2, d_model=32, n_heads=4, n_kv_heads=kv, d_mlp=64)
    data = first_hop()
    longer = Example("A much longer prompt: the people of Tom speak", data.implications[0].answer)
    examples = [*data.implications[:3], longer]
    opts = data.implication_options
    one = option_logits(model, examples, opts, batch_size=1)
    many = option_logits(model, examples, opts, batch_size=32)
    torch.testing.assert_close(one, many, atol=2e-5, rtol=1e-5)
