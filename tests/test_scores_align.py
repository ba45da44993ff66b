"""Token alignment across items, counterfactual draws and the canonical template."""

from __future__ import annotations

import pytest
import torch

from extractive_lens.data import Example
from extractive_lens.metrics import prompt_ids
from extractive_lens.scores import AlignmentError, informative_scores
from extractive_lens.scores.align import (
    align,
    canonical_layout,
    sample_counterfactuals,
)

TEMPLATE = "The people in the city {} is from speak"
ITEMS = [
    Example.from_template(TEMPLATE, "Al", "French"),
    Example.from_template(TEMPLATE, "Grace Miller", "German"),
    Example.from_template(TEMPLATE, "Anna Kowalczyk-Brown", "Spanish"),
]
OPTIONS = ["French", "German", "Spanish"]


@pytest.fixture(scope="module")
def tok(tiny_llama):
    return tiny_llama.tokenizer


def _ids(tok, items):
    return [prompt_ids(tok, e.prompt) for e in items]


def test_split_prefix_entity_suffix(tok):
    ids = _ids(tok, ITEMS)
    a = align(tok, ITEMS, ids)
    (g,) = a.groups
    assert [tok.decode(list(g.prefix))] == ["The people in the city"]
    assert tok.decode(list(g.suffix)) == " is from speak"
    lengths = [len(x) - len(g.prefix) - len(g.suffix) for x in ids]
    assert list(g.entity_lengths) == lengths
    assert lengths[0] < lengths[1] < lengths[2]


def test_counterfactual_positions_right_align_the_entity(tok):
    ids = _ids(tok, ITEMS)
    a = align(tok, ITEMS, ids)
    p = len(a.groups[0].prefix)
    e = a.groups[0].entity_lengths
    # longer item onto shorter counterfactual: extra leading entity tokens -> cf's first one
    index = a.counterfactual_positions(2, 0, len(ids[2])).tolist()
    assert index[:p] == list(range(p))
    assert index[p : p + e[2]] == [p] * (e[2] - e[0]) + list(range(p, p + e[0]))
    assert index[p + e[2] :] == list(range(p + e[0], len(ids[0])))
    # shorter onto longer: right-aligned, the counterfactual's extra tokens are skipped
    index = a.counterfactual_positions(0, 2, len(ids[0])).tolist()
    assert index[p : p + e[0]] == list(range(p + e[2] - e[0], p + e[2]))
    assert [ids[2][k] for k in index[p + e[0] :]] == ids[0][p + e[0] :]


def test_canonical_positions_and_labels(tok):
    ids = _ids(tok, ITEMS)
    a = align(tok, ITEMS, ids)
    slots, labels = canonical_layout(tok, a)
    assert slots == max(a.groups[0].entity_lengths)
    assert "".join(labels).startswith("The people in the city X")
    assert "".join(labels).endswith(" is from speak")
    slots, labels = canonical_layout(tok, a, "The people in the city X Y is from speak")
    assert slots == 2 and "".join(labels) == "The people in the city X Y is from speak"
    p = len(a.groups[0].prefix)
    # a 3+-token entity on 2 slots: the extra leading tokens fold into the first slot
    index = a.canonical_positions(2, len(ids[2]), 2).tolist()
    e = a.groups[0].entity_lengths[2]
    assert index[p : p + e] == [p] * (e - 1) + [p + 1]
    with pytest.raises(AlignmentError, match="prefix"):
        canonical_layout(tok, a, "Some other prompt X is from speak")


def _block_delta(model, seed):
    from extractive_lens.models import named_parameters

    gen = torch.Generator().manual_seed(seed)
    return {
        n: 0.02 * torch.randn(p.shape, generator=gen)
        for n, p in named_parameters(model).items()
        if ".h." in n
    }


def test_canonical_scores_keep_totals(tiny_gpt2, precision):
    s = informative_scores(tiny_gpt2, _block_delta(tiny_gpt2, 0), ITEMS, OPTIONS)
    for template in (None, "The people in the city X Y is from speak"):
        c = s.canonical(template)
        assert c.mlp.shape[0] == len(c.labels)
        # sums of the same fp32 scores in another order: rounding at the scale of their terms
        terms = (s.mlp.abs().sum() + s.heads.abs().sum()) / len(ITEMS)
        eps = torch.finfo(torch.float32).eps
        precision.check(c.total(), s.total() / len(ITEMS), eps=eps, scale=terms)
        # per component too: canonical sum over positions = mean per-item total
        per_item = s.sum_positions()["heads"].mean(0)
        precision.check(c.heads.sum(0), per_item, eps=eps, scale=s.heads.abs().sum((0, 1)))
    assert c.top(3)[0][2] >= c.top(3)[1][2]


def test_unalignable_items_are_named(tok):
    # "Mr{}": "Mrs Smith" tokenises "Mrs" as one token that straddles the template boundary
    bad = [
        Example.from_template("Mr{} lives in", " Lee", "Paris"),
        Example.from_template("Mr{} lives in", "s Smith", "Rome"),
    ]
    ids = _ids(tok, bad)
    if len({tuple(i[:1]) for i in ids}) == 1:
        pytest.skip("this tokenizer does not merge across the boundary")
    with pytest.raises(AlignmentError, match=r"item 1 \('Mrs Smith lives in'\)"):
        align(tok, bad, ids)


def test_untemplated_pairs_align_by_shared_tokens(tok):
    pairs = [Example(e.prompt, e.answer) for e in ITEMS]
    a = align(tok, pairs, _ids(tok, pairs))
    b = align(tok, ITEMS, _ids(tok, ITEMS))
    assert a.groups[0].prefix == b.groups[0].prefix
    assert a.groups[0].suffix == b.groups[0].suffix


def test_counterfactual_draw(tok):
    items = ITEMS + [Example.from_template(TEMPLATE, "Bo", "French")]
    a = align(tok, items, _ids(tok, items))
    draw = sample_counterfactuals(a, items, 50, seed=3)
    assert torch.equal(draw, sample_counterfactuals(a, items, 50, seed=3))
    for i, row in enumerate(draw.tolist()):
        assert all(items[j].answer != items[i].answer for j in row)
    assert set(draw[0].tolist()) == {1, 2}
    lonely = [
        Example.from_template(TEMPLATE, "Al", "French"),
        Example.from_template(TEMPLATE, "Bo", "French"),
    ]
    with pytest.raises(AlignmentError, match="no counterfactual"):
        sample_counterfactuals(align(tok, lonely, _ids(tok, lonely)), lonely, 2, seed=0)


def test_mixed_templates_have_no_single_canonical(tiny_mha):
    from extractive_lens.delta import WeightDelta

    items = ITEMS + [Example.from_template("{} lives in", "Al", "Paris")]
    s = informative_scores(tiny_mha, WeightDelta.zeros_like(tiny_mha), items, OPTIONS + ["Paris"])
    assert len(s.alignment.groups) == 2
    with pytest.raises(AlignmentError, match="one template"):
        s.canonical()


def test_per_slot_canonical_averages_only_over_items_that_have_the_slot(tiny_gpt2):
    s = informative_scores(tiny_gpt2, _block_delta(tiny_gpt2, 1), ITEMS, OPTIONS)
    plain, per_slot = s.canonical(), s.canonical(per_slot=True)
    slots, _ = canonical_layout(tiny_gpt2.tokenizer, s.alignment)
    index = [s.alignment.canonical_positions(i, n, slots) for i, n in enumerate(s.lengths)]
    assert per_slot.counts == plain.counts
    assert min(plain.counts) < len(ITEMS)  # some slot only the longer entities reach
    for pos in range(len(plain.labels)):
        have = [i for i in range(len(ITEMS)) if (index[i] == pos).any()]
        assert plain.counts[pos] == len(have)
        sums = [s.mlp[i, : s.lengths[i]][index[i] == pos].sum(0) for i in have]
        torch.testing.assert_close(per_slot.mlp[pos], torch.stack(sums).mean(0))
        torch.testing.assert_close(plain.mlp[pos], torch.stack(sums).sum(0) / len(ITEMS))


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_more_items(tiny_gpt2):
    delta = _block_delta(tiny_gpt2, 2)
    s = informative_scores(tiny_gpt2, delta, ITEMS, OPTIONS)
    point = s.canonical(per_slot=True)
    low, high = s.canonical_interval(n_boot=400, seed=0)
    assert torch.all(low.mlp <= high.mlp + 1e-12) and low.labels == point.labels
    inside = ((low.heads <= point.heads + 1e-9) & (point.heads <= high.heads + 1e-9)).float()
    assert inside.mean() > 0.9
    # the same items four times over: the interval of the mean narrows by about sqrt(4) = 2
    many = informative_scores(tiny_gpt2, delta, ITEMS * 4, OPTIONS)
    low4, high4 = many.canonical_interval(n_boot=400, seed=0)
    torch.testing.assert_close(many.canonical(per_slot=True).mlp, point.mlp)
    ratio = float((high4.mlp - low4.mlp).sum() / (high.mlp - low.mlp).sum())
    assert 0.35 < ratio < 0.75
    with pytest.raises(ValueError, match="level"):
        s.canonical_interval(level=1.5)
