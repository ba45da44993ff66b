"""What a total means under grouped-query attention (``scores.result`` module doc).

- downstream / upstream: the query heads' ``hook_z`` scores alone sum to the attention layer's
  score taken at the attention output (W_O is linear and o_proj has no bias), computed here
  from separate passes at ``attn.o.hook_out``; adding the K/V heads would count their path twice.
  (For upstream the output-side identity needs W_O unchanged, since dR'/dz = W_O'^T dR'/d out:
  that check uses a delta without o_proj.)
- informative: the components partition the weights, so all of them (K/V heads included) sum
  to <grad R, Delta> over the owned parameters, taken here from autograd on the parameters;
- every aggregation (``sum_heads``, ``layer_totals``, ``total``, canonical totals, heatmap
  attention panels, graph node selection) follows those definitions.
"""

from __future__ import annotations

import pytest
import torch

from extractive_lens.components import Component
from extractive_lens.data import first_token_ids
from extractive_lens.delta import WeightDelta
from extractive_lens.graph import extractive_graph
from extractive_lens.metrics import answer_index, encode
from extractive_lens.models import named_parameters, tiny_model
from extractive_lens.plots.heatmaps import attention_by_layer
from extractive_lens.scores import extractive_scores, upstream_scores
from extractive_lens.scores.passes import run_pass, target_forward
from extractive_lens.scores.result import kv_is_additive
from tests.test_scores import EXAMPLES, OPTIONS, random_delta

KW = {"rtol": 1e-7, "atol": 1e-9}  # float64 model; HF RMSNorm is fp32 inside: see below


@pytest.fixture(scope="module")
def gqa():
    model = tiny_model(
        "llama", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, seed=5, dtype=torch.float64
    )
    delta = random_delta(model, seed=7, scale=0.05, dtype=torch.float64)
    scores = extractive_scores(model, delta, EXAMPLES, OPTIONS, counterfactuals=None)
    return model, delta, scores


def _attn_out_scores(model, delta):
    """Per layer [example, pos]: downstream <dR/dy, y~ - y> and upstream <dR'/dy - dR/dy, y - 0>
    at the attention output y."""
    tok = model.tokenizer
    batch = encode(tok, EXAMPLES, with_answers=False)
    ans = answer_index(EXAMPLES, OPTIONS)
    ids = torch.tensor(first_token_ids(tok, OPTIONS))
    n_layers = model.cfg.n_layers
    outs = [f"blocks.{layer}.attn.o.hook_out" for layer in range(n_layers)]
    subs = [
        f"blocks.{layer}.{h}" for layer in range(n_layers) for h in ("ln1.hook_out", "ln2.hook_in")
    ]
    first, _ = run_pass(model, batch, ans, ids, values=outs, grads=outs)
    with delta.applied(model):
        second, _ = run_pass(model, batch, ans, ids, values=subs, grads=outs)
    third, _ = run_pass(
        model, batch, ans, ids, values=outs, substitute={h: second.values[h] for h in subs}
    )
    mask = batch.attention_mask.to(torch.float64)
    down = [((first.grads[h] * (third.values[h] - first.values[h])).sum(-1) * mask) for h in outs]
    up = [(((second.grads[h] - first.grads[h]) * first.values[h]).sum(-1) * mask) for h in outs]
    return torch.stack(down, -1), torch.stack(up, -1)


def test_query_heads_alone_sum_to_the_attention_output_score(gqa):
    model, delta, scores = gqa
    down, _ = _attn_out_scores(model, delta)
    keep_o = WeightDelta({n: t for n, t in delta.items() if "o_proj" not in n}, dtype=torch.float64)
    _, up = _attn_out_scores(model, keep_o)
    up_scores = upstream_scores(model, keep_o, EXAMPLES, OPTIONS, counterfactuals=None)
    for role, s, exact in (("downstream", scores.downstream, down), ("upstream", up_scores, up)):
        assert not kv_is_additive(role)
        p = s.heads.shape[1]
        torch.testing.assert_close(s.sum_heads(), exact[:, :p].to(s.heads.dtype), **KW)
        # The K/V path is real and large: adding it would change the total by a visible amount.
        kv = s.kv_heads.sum(-1)
        assert kv.abs().sum() > 0.05 * exact.abs().sum()
        torch.testing.assert_close(s.layer_totals()["attn"], exact.sum((0, 1)), **KW)
        expected_total = s.mlp.sum() + exact.sum()
        torch.testing.assert_close(s.total(), expected_total, **KW)


def test_informative_counts_every_component_once(gqa):
    """sum over MLPs, query heads and K/V heads = <grad R, Delta> over the block weights."""
    model, delta, scores = gqa
    inf = scores.informative
    assert kv_is_additive("informative")
    params = named_parameters(model)
    tok = model.tokenizer
    batch = encode(tok, EXAMPLES, with_answers=False)
    ans = answer_index(EXAMPLES, OPTIONS)
    ids = torch.tensor(first_token_ids(tok, OPTIONS))
    names = [n for n in delta if "norm" not in n or "post_attention" in n]
    grads = torch.autograd.grad(
        target_forward(model, batch, ans, ids).sum(), [params[n] for n in names]
    )
    exact = sum((g * delta[n].to(g.dtype)).sum() for n, g in zip(names, grads, strict=True))
    torch.testing.assert_close(inf.total(), exact, rtol=1e-6, atol=1e-8)
    heads_and_kv = inf.heads.sum(-1) + inf.kv_heads.sum(-1)
    torch.testing.assert_close(inf.sum_heads(), heads_and_kv)


def test_canonical_heatmap_and_graph_use_the_same_totals(gqa):
    _, _, scores = gqa
    canon = scores.canonical()
    for role, c in canon.items():
        expected = c.heads.sum(-1) + (c.kv_heads.sum(-1) if role == "informative" else 0)
        torch.testing.assert_close(attention_by_layer(c), expected)
        torch.testing.assert_close(c.total(), c.mlp.sum() + expected.sum())
    graph = extractive_graph(canon, top_k=30)
    kinds = {(n.role, n.component.kind) for n in graph.nodes}
    assert ("downstream", "kv_head") not in kinds and ("upstream", "kv_head") not in kinds
    # informative K/V heads own weights: they compete like any component (by |score|)
    top = {(c, pos) for c, pos, _ in canon["informative"].top(30, absolute=True)}
    assert {(n.component, n.position) for n in graph.by_role("informative")} == top
    assert Component(0, "kv_head", 0) in canon["downstream"].components()  # still inspectable
