"""Every figure, built from a real tiny-model demo run; content checked against the results."""

from __future__ import annotations

import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from extractive_lens.plots import (
    ROLE_COLOURS,
    as_canonical,
    attention_by_layer,
    choose_position,
    graph_figure,
    head_drilldown,
    head_matrix,
    head_names,
    linear_fit,
    ocr_curves,
    scatter_with_fit,
    score_heatmaps,
    table_figure,
)

try:
    from test_demo import tiny_demo
except ImportError:  # pytest --import-mode=importlib
    from tests.test_demo import tiny_demo


@pytest.fixture(scope="module")
def demo(tiny_llama, tmp_path_factory):
    return tiny_demo(tiny_llama, tmp_path_factory)[0]


@pytest.fixture(scope="module")
def run(demo):
    return demo["first_hop"]


def _close(a, b, tol=1e-9):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), atol=tol)


# --------------------------------------------------------------------------- curves


def test_ocr_curves_one_panel_per_dataset_with_styles_values_and_chance(demo):
    results = [r.ocr for r in demo.runs]
    fig = ocr_curves(results)
    assert isinstance(fig, go.Figure)
    titles = [a.text for a in fig.layout.annotations]
    assert any(t.startswith("first_hop") for t in titles)
    assert any(t.startswith("second_hop") for t in titles)
    dash = {"facts": "solid", "implications": "dash", "control_implications": "dot"}
    assert len(fig.data) == 3 * len(results)
    for trace in fig.data:
        dataset, split = trace.meta
        result = next(r for r in results if r.dataset == dataset)
        rows = result.table()
        assert list(trace.x) == [row["epoch"] for row in rows] == [0, 1, 2]
        _close(trace.y, [row[split] for row in rows])
        assert trace.line.dash == dash[split]
        # the last point carries +- 1 SE over the items of the final ranks, the others none
        final = torch.tensor(result.final_ranks[split], dtype=torch.float64)
        se = float(final.std() / len(final) ** 0.5)
        assert list(trace.error_y.array[:-1]) == [0.0] * (len(rows) - 1)
        assert trace.error_y.array[-1] == pytest.approx(se)
    # the first panel's traces live on x/y, the second's on x2/y2
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
    chance = [s for s in fig.layout.shapes if s.y0 == s.y1]
    assert len(chance) == 2 and all(s.y0 == pytest.approx(9.5) for s in chance)
    assert sum("chance 9.5" in a.text for a in fig.layout.annotations) == 2
    # end-of-line labels, so no legend hunt is needed
    assert sum(a.text in {"facts", "impl.", "control"} for a in fig.layout.annotations) == 6
    assert "mean rank" in fig.layout.yaxis.title.text
    assert "epoch" in fig.layout.xaxis.title.text


def test_ocr_curves_from_saved_json_equal_the_live_figure(demo):
    saved = json.loads((demo.out_dir / "first_hop" / "results.json").read_text())
    live = ocr_curves(demo["first_hop"].ocr)
    again = ocr_curves(saved)
    for a, b in zip(live.data, again.data, strict=True):
        _close(a.y, b.y)
        _close(a.error_y.array, b.error_y.array)


# --------------------------------------------------------------------------- heatmaps


def test_score_heatmaps_rows_columns_values_and_colour_scales(run):
    canonical = run.canonical
    fig = score_heatmaps(run.scores)  # ExtractiveScores in, canonical computed inside
    roles = ["downstream", "informative", "upstream"]
    assert [t.name for t in fig.data] == [f"{r} {k}" for r in roles for k in ("MLP", "attention")]
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:2] == [
        "downstream · MLP",
        "downstream · attention (sum over query heads; K/V path included)",
    ]
    assert titles[3] == "informative · attention (query + K/V heads' weights)"
    labels = [t.strip() for t in canonical["informative"].labels]
    n_pos, n_layers = canonical["informative"].mlp.shape
    for i, role in enumerate(roles):
        mlp, attn = fig.data[2 * i], fig.data[2 * i + 1]
        c = canonical[role]
        _close(mlp.z, c.mlp.T.double())
        # K/V heads add only to informative (a partition of the weights); downstream and
        # upstream query-head scores already carry the K/V path
        kv = c.kv_heads.sum(-1) if role == "informative" else 0
        _close(attn.z, (c.heads.sum(-1) + kv).T.double())
        _close(attn.z, attention_by_layer(c).T.double())
        assert list(mlp.y) == list(range(n_layers))  # layer 0 first = at the bottom
        assert list(mlp.x) == list(range(n_pos))
        axis = fig.layout[mlp.coloraxis]
        assert mlp.coloraxis == attn.coloraxis  # one scale per row, shared by MLP and attention
        assert axis.cmid == 0 and axis.cmin == -axis.cmax
        peak = max(np.abs(np.asarray(mlp.z)).max(), np.abs(np.asarray(attn.z)).max())
        assert axis.cmax == pytest.approx(peak)
        assert axis.colorscale[0][1] != axis.colorscale[-1][1]  # diverging
        # hover: token, layer, value; top heads for attention, matching the head scores
        assert "layer %{y}" in mlp.hovertemplate and "%{z" in mlp.hovertemplate
        assert "top heads" in attn.hovertemplate
        layer, pos = n_layers - 1, n_pos - 1
        token, top = attn.customdata[layer][pos]
        assert token == labels[pos]
        values = head_matrix(c)[pos, layer].tolist()
        best = max(range(len(values)), key=lambda h: abs(values[h]))
        assert top.split(",")[0].split()[0] == head_names(c)[best]
    assert list(fig.layout.xaxis.ticktext) == labels
    assert fig.layout.yaxis.range[0] < 0 < fig.layout.yaxis.range[1]


def test_score_heatmaps_accept_canonical_objects_and_saved_json(demo, run):
    saved = json.loads((demo.out_dir / "first_hop" / "scores.json").read_text())["canonical"]
    a = score_heatmaps(run.canonical)
    b = score_heatmaps(saved)
    for ta, tb in zip(a.data, b.data, strict=True):
        _close(ta.z, tb.z, tol=1e-6)
    back = as_canonical(saved)
    assert back["upstream"].labels == run.canonical["upstream"].labels


def test_head_drilldown_layer_by_head_at_a_chosen_position(run):
    canonical = run.canonical
    pos = choose_position(canonical)
    totals = [
        sum(float(head_matrix(c)[p].abs().sum()) for c in canonical.values())
        for p in range(len(canonical["upstream"].labels))
    ]
    assert pos == int(np.argmax(totals))
    fig = head_drilldown(run.scores)
    assert fig.layout.meta["position"] == pos
    names = head_names(canonical["informative"])
    assert names == ["H0", "H1", "H2", "H3", "KV0", "KV1"]  # 4 query heads, 2 K/V heads
    for trace, role in zip(fig.data, ["downstream", "informative", "upstream"], strict=True):
        assert list(trace.x) == names
        _close(trace.z, head_matrix(canonical[role])[pos].double())
        axis = fig.layout[trace.coloraxis]
        assert axis.cmid == 0 and axis.cmin == -axis.cmax
    last = head_drilldown(canonical, "speak")
    assert last.layout.meta["token"] == "speak"
    assert last.layout.meta["position"] == len(canonical["upstream"].labels) - 1
    assert head_drilldown(canonical, -1).layout.meta == last.layout.meta
    _close([row[:4] for row in last.data[1].z], canonical["informative"].heads[-1].double())
    with pytest.raises(ValueError, match="no canonical token"):
        head_drilldown(canonical, "nonexistent")


# --------------------------------------------------------------------------- graph


def test_graph_figure_nodes_at_token_and_layer_coloured_by_role(run):
    graph = run.graph
    fig = graph_figure(graph)
    nodes = {n.id: n for n in graph.nodes}
    node_traces = [t for t in fig.data if t.mode == "markers+text"]
    edge_traces = [t for t in fig.data if t.mode == "lines"]
    assert sum(len(t.x) for t in node_traces) == len(graph.nodes)
    assert fig.layout.meta["n_nodes"] == len(graph.nodes)
    assert fig.layout.meta["n_edges"] == len(graph.edges)
    drawn_edges = sum(list(t.x).count(None) for t in edge_traces)
    assert drawn_edges == len(graph.edges)
    for trace in node_traces:
        role = next(r for r in ROLE_COLOURS if trace.name.startswith(r))
        assert trace.marker.color == ROLE_COLOURS[role]
        members = [n for n in graph.nodes if n.role == role]
        assert len(trace.x) == len(members)
        for x, y, data, node in zip(trace.x, trace.y, trace.customdata, members, strict=True):
            assert data[0] == str(node.component)
            assert abs(x - node.position) < 0.5  # placed at its token ...
            assert abs(y - node.component.layer) < 0.5  # ... and its layer
            assert data[2] == node.component.layer
            _close(data[3:], [node.upstream, node.informative, node.downstream])
        sizes = list(trace.marker.size)
        scores = [abs(n.score) for n in members]
        assert sizes[int(np.argmax(scores))] == max(sizes)  # sized by score
        assert "upstream" in trace.hovertemplate and "downstream" in trace.hovertemplate
    assert list(fig.layout.xaxis.ticktext) == [t.strip() for t in graph.labels]
    assert set(nodes)  # ids unique and present


def test_graph_figure_from_saved_json(demo, run):
    saved = json.loads((demo.out_dir / "first_hop" / "graph.json").read_text())
    a, b = graph_figure(run.graph), graph_figure(saved)
    for ta, tb in zip(a.data, b.data, strict=True):
        assert list(ta.x) == list(tb.x) and list(ta.y) == list(tb.y)


# --------------------------------------------------------------------------- tables, scatter


def test_table_figure_shows_every_cell(demo):
    rows = demo.rows()
    fig = table_figure(rows, "Final mean ranks")
    table = fig.data[0]
    assert isinstance(table, go.Table)
    assert [h.replace("<b>", "").replace("</b>", "") for h in table.header.values] == list(rows[0])
    columns = dict(zip(rows[0], table.cells.values, strict=True))
    assert list(columns["dataset"]) == ["first_hop", "second_hop"]
    assert list(columns["fact rank"]) == [f"{r['fact rank']:.2f}" for r in rows]
    assert fig.layout.title.text == "Final mean ranks"
    spread = table_figure([{"weights": "graft", "I(F')": (1.13, 0.2), "n": 3, "x": None}])
    assert list(spread.data[0].cells.values[1]) == ["1.13 ± 0.20"]
    assert list(spread.data[0].cells.values[3]) == [""]


def test_scatter_with_fit_line_and_r2_from_real_scores(run):
    # localisation-style: informative vs downstream MLP scores over (position, layer) cells
    c = run.canonical
    x = c["informative"].mlp.flatten().tolist()
    y = c["downstream"].mlp.flatten().tolist()
    labels = [
        f"pos {p} L{layer}"
        for p in range(c["informative"].mlp.shape[0])
        for layer in range(c["informative"].mlp.shape[1])
    ]
    fig = scatter_with_fit(
        x, y, labels, "informative vs downstream (MLP)", x_title="informative", y_title="downstream"
    )
    r = np.corrcoef(x, y)[0, 1]
    slope, intercept = np.polyfit(x, y, 1)
    assert f"r² = {r * r:.2f}" in fig.layout.title.text and f"n = {len(x)}" in fig.layout.title.text
    points, line = fig.data
    _close(points.x, x)
    assert list(points.text) == labels
    _close(line.y, [slope * min(x) + intercept, slope * max(x) + intercept], tol=1e-6)
    assert linear_fit([0, 1, 2], [1, 3, 5]) == pytest.approx((2.0, 1.0, 1.0))
    flat = scatter_with_fit([1, 1, 1], [0, 1, 2], title="degenerate")
    assert "r² = n/a" in flat.layout.title.text and len(flat.data) == 1
    assert math.isnan(linear_fit([1, 1], [0, 1])[2])


def test_heatmaps_reject_wrong_inputs():
    with pytest.raises(TypeError):
        score_heatmaps(torch.zeros(3))
