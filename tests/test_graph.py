"""The extractive graph: node selection, forward-order edges, exports."""

from __future__ import annotations

import json

import pytest
import torch

from extractive_lens.components import Component
from extractive_lens.data import Example
from extractive_lens.graph import ExtractiveGraph, can_reach, extractive_graph
from extractive_lens.models import named_parameters
from extractive_lens.scores import extractive_scores

TEMPLATE = "The people in the city {} is from speak"
ITEMS = [
    Example.from_template(TEMPLATE, e, a)
    for e, a in [
        ("Grace Miller", "French"),
        ("Tom Li", "German"),
        ("Ravi Shankar", "Greek"),
        ("Lea Wu", "Dutch"),
    ]
]
OPTIONS = ["French", "German", "Greek", "Dutch"]


@pytest.fixture(scope="module")
def scores(tiny_llama):
    gen = torch.Generator().manual_seed(0)
    delta = {
        n: 0.02 * torch.randn(p.shape, generator=gen)
        for n, p in named_parameters(tiny_llama).items()
        if ".layers." in n
    }
    return extractive_scores(tiny_llama, delta, ITEMS, OPTIONS, counterfactuals=3)


def test_reachability_rules():
    mlp0, mlp1, mlp2 = (Component(i, "mlp") for i in range(3))
    h0, h1 = Component(0, "head", 1), Component(1, "head", 0)
    kv0 = Component(0, "kv_head", 0)
    assert can_reach(mlp0, 3, mlp1, 3) and not can_reach(mlp1, 3, mlp0, 3)  # forward order
    assert not can_reach(mlp0, 4, mlp1, 3)  # never to an earlier position
    assert not can_reach(mlp0, 2, Component(0, "head", 0), 2)  # the MLP comes after the heads
    assert can_reach(h0, 2, mlp0, 2) and not can_reach(h0, 1, mlp0, 2)  # MLPs stay put
    assert can_reach(mlp0, 1, h1, 4)  # a later head moves information forward
    assert can_reach(mlp0, 1, mlp1, 4)  # through layer 1's attention
    assert not can_reach(mlp0, 1, Component(1, "kv_head", 0), 4)  # K/V read their own position
    assert can_reach(mlp0, 1, Component(2, "kv_head", 0), 4)
    assert can_reach(kv0, 1, Component(0, "head", 1), 3, group_size=2)  # its query heads
    assert not can_reach(kv0, 1, Component(0, "head", 2), 3, group_size=2)  # another group's
    assert can_reach(kv0, 1, mlp0, 3) and can_reach(kv0, 1, mlp2, 3)


def test_graph_nodes_edges_and_exports(scores):
    g = extractive_graph(scores, top_k=4)
    assert isinstance(g, ExtractiveGraph)
    canon = scores.canonical()
    for role in ("upstream", "informative", "downstream"):
        nodes = g.by_role(role)
        assert len(nodes) == 4
        # largest |score| first; downstream / upstream select among MLPs and query heads only
        ranked = canon[role].top(10**6, absolute=True)
        best = [e for e in ranked if role == "informative" or e[0].kind != "kv_head"][:4]
        assert [(n.component, n.position) for n in nodes] == [(c, p) for c, p, _ in best]
        for n in nodes:  # every node carries all three scores
            for r in ("upstream", "informative", "downstream"):
                assert getattr(n, r) == pytest.approx(
                    float(canon[r].component(n.component)[n.position])
                )
            assert n.token == canon[role].labels[n.position]
    ids = {n.id: n for n in g.nodes}
    assert g.edges
    for s, t in g.edges:
        a, b = ids[s], ids[t]
        assert (a.role, b.role) in {("upstream", "informative"), ("informative", "downstream")}
        assert a.component.layer <= b.component.layer and a.position <= b.position
    # every allowed pair is an edge
    ups, infos = g.by_role("upstream"), g.by_role("informative")
    expected = sum(
        can_reach(a.component, a.position, b.component, b.position, 2) for a in ups for b in infos
    )
    assert sum(1 for s, _ in g.edges if s.startswith("upstream")) == expected

    d = json.loads(g.to_json())
    assert len(d["nodes"]) == 12 and len(d["edges"]) == len(g.edges)
    nx_graph = g.to_networkx()
    assert nx_graph.number_of_nodes() == 12 and nx_graph.number_of_edges() == len(g.edges)
    text = g.summary()
    for role in ("upstream", "informative", "downstream"):
        assert role in text
    assert "layer" in text and repr(g.by_role("informative")[0].token) in text


def test_threshold_selection(scores):
    canon = scores.canonical()
    ranked = [e for e in canon["downstream"].top(10**6, absolute=True) if e[0].kind != "kv_head"]
    cut = abs(ranked[2][2])
    g = extractive_graph(canon, threshold=cut)
    assert len(g.by_role("downstream")) == 3
    assert all(abs(n.score) >= cut for n in g.nodes)  # by magnitude: negatives count
    positive = extractive_graph(canon, threshold=cut, select="positive")
    assert all(n.score >= cut for n in positive.nodes)
    assert any(n.score < 0 for n in extractive_graph(canon, top_k=20).nodes)  # negatives shown
    assert len(extractive_graph(canon, top_k=2, threshold=cut).by_role("downstream")) == 2
    with pytest.raises(ValueError, match="roles"):
        extractive_graph({"informative": canon["informative"]})


def test_reachability_in_parallel_blocks():
    """Attention and MLP of one layer read the same residual: no head -> MLP within a layer."""
    mlp0, mlp1, mlp2 = (Component(i, "mlp") for i in range(3))
    h0, kv0 = Component(0, "head", 1), Component(0, "kv_head", 0)
    assert can_reach(h0, 2, mlp0, 2) and not can_reach(h0, 2, mlp0, 2, parallel=True)
    assert can_reach(kv0, 1, mlp0, 3, group_size=2)
    assert not can_reach(kv0, 1, mlp0, 3, group_size=2, parallel=True)
    assert can_reach(kv0, 1, Component(0, "head", 1), 3, group_size=2, parallel=True)
    assert can_reach(h0, 2, mlp1, 2, parallel=True)  # the next layer's MLP reads it
    assert can_reach(mlp0, 1, mlp1, 4) and not can_reach(mlp0, 1, mlp1, 4, parallel=True)
    assert can_reach(mlp0, 1, mlp2, 4, parallel=True)  # layer 1's attention moves it forward


def test_parallel_model_graph_has_no_same_layer_head_to_mlp_edge():
    from extractive_lens.models import tiny_model

    model = tiny_model("gpt-j", n_layers=2, d_model=32, n_heads=4, d_mlp=64, seed=0)
    gen = torch.Generator().manual_seed(0)
    delta = {
        n: 0.05 * torch.randn(p.shape, generator=gen)
        for n, p in named_parameters(model).items()
        if ".h." in n
    }
    scores = extractive_scores(model, delta, ITEMS, OPTIONS, counterfactuals=2)
    assert scores.informative.parallel_blocks and scores.canonical()["informative"].parallel_blocks
    g = extractive_graph(scores, top_k=40)
    nodes = {n.id: n for n in g.nodes}
    pairs = [(nodes[a], nodes[b]) for a, b in g.edges]
    assert pairs
    assert not [
        (a, b)
        for a, b in pairs
        if a.component.layer == b.component.layer
        and a.component.kind == "head"
        and b.component.kind == "mlp"
    ]


def test_edges_only_between_nodes_whose_interval_excludes_zero(scores):
    canon = scores.canonical(per_slot=True)
    intervals = {
        role: s.canonical_interval(per_slot=True, n_boot=200, seed=0)
        for role, s in scores.roles().items()
    }
    g = extractive_graph(canon, top_k=8, intervals=intervals)
    for n in g.nodes:
        low, high = intervals[n.role]
        lo = float(low.component(n.component)[n.position])
        hi = float(high.component(n.component)[n.position])
        assert n.significant == (lo > 0 or hi < 0)
    ids = {n.id: n for n in g.nodes}
    assert all(ids[s].significant and ids[t].significant for s, t in g.edges)
    plain = extractive_graph(canon, top_k=8)
    assert {n.id for n in plain.nodes} == {n.id for n in g.nodes}  # same nodes, fewer edges
    assert set(g.edges) <= set(plain.edges)
    assert all(n.significant is None for n in plain.nodes)
    assert g.to_dict()["nodes"][0]["significant"] == g.nodes[0].significant
