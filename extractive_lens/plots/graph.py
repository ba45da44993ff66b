"""The extractive graph drawn at (token position, layer): upstream -> informative -> downstream.

Takes an ``ExtractiveGraph`` (``extractive_lens.graph``) or its ``to_dict()`` form. Nodes and
edges are read tolerantly (attributes or dict keys), see :func:`graph_nodes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from extractive_lens.plots._common import ROLE_COLOURS, ROLES, token_label

#: Legend text: what each score measures, and nothing more (docs/method.md §3). A high informative
#: score at a token says the component's weight change raises R through that position; it does
#: not say the fact is "stored" there.
ROLE_TEXT = {
    "upstream": "upstream: finetuned model relies more on this activation",
    "informative": "informative: this weight change raises the answer's score",
    "downstream": "downstream: old weights turn the new inputs into the answer",
}
EDGE_COLOURS = {"upstream": "rgba(44,160,44,0.45)", "informative": "rgba(255,127,14,0.45)"}


@dataclass(frozen=True)
class GraphNode:
    """A node as drawn: component, canonical position and token, role and all three scores."""

    key: Any
    name: str
    layer: int
    kind: str
    head: int | None
    position: int
    token: str
    role: str
    scores: dict[str, float]
    significant: bool | None = None

    @property
    def score(self) -> float:
        """The score of the node's own role."""
        return self.scores.get(self.role, math.nan)


def graph_nodes(graph: Any) -> tuple[list[GraphNode], list[tuple[int, int]], list[str] | None]:
    """``(nodes, edges as (source index, target index), canonical labels or None)``."""
    data = graph.to_dict() if hasattr(graph, "to_dict") else graph
    if not isinstance(data, Mapping) or "nodes" not in data:
        raise TypeError("expected an ExtractiveGraph or a mapping with 'nodes' and 'edges'")
    labels = data.get("labels") or data.get("tokens")
    nodes = [_node(i, n, labels) for i, n in enumerate(data["nodes"])]
    index: dict[Any, int] = {}
    for i, n in enumerate(nodes):
        index.setdefault(n.key, i)
        index.setdefault(i, i)
    edges = []
    for e in data.get("edges", ()):
        if isinstance(e, Mapping):
            src = e.get("source", e.get("src", e.get("from")))
            dst = e.get("target", e.get("dst", e.get("to")))
        else:
            src, dst = e[0], e[1]
        src, dst = _hashable(src), _hashable(dst)
        if src not in index or dst not in index:
            raise KeyError(f"edge {e!r} names a node the graph does not have")
        edges.append((index[src], index[dst]))
    return nodes, edges, list(labels) if labels else None


def graph_figure(graph: Any, *, title: str | None = None) -> go.Figure:
    """Nodes at (token position, layer), coloured by role, sized by |score|, edges drawn.

    Sizes compare nodes of one role (each role's largest |score| gets the largest marker).

    Within a (token, layer) cell the MLP sits above the attention heads, which are spread side by
    side. Filled markers help the correct answer, open ones hurt it (the legend says so); faint
    ones have a bootstrap interval that includes 0 (when the graph was built with intervals); the
    larger nodes are named. Edges are possible paths (``graph.EDGE_MEANING``), labelled as such.
    Hover shows the component, token, layer, role and all three scores.
    """
    nodes, edges, labels = graph_nodes(graph)
    ticktext = _tick_labels(nodes, labels)
    n_heads = max((n.head + 1 for n in nodes if n.head is not None), default=1)
    xy = [_place(n, n_heads) for n in nodes]
    fig = go.Figure()
    for role in ("upstream", "informative"):
        fig.add_trace(_edge_trace(role, nodes, edges, xy))
    for role in ROLES[::-1]:
        members = [i for i, n in enumerate(nodes) if n.role == role]
        if members:
            fig.add_trace(_node_trace(role, [nodes[i] for i in members], [xy[i] for i in members]))
    if any(n.score < 0 for n in nodes):  # legend entry for the open (negative) markers
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                marker={"symbol": "circle-open", "color": "#555", "size": 12},
                name="open marker: the score is negative (hurts the answer)",
            )
        )
    n_layers = max((n.layer for n in nodes), default=0) + 1
    fig.update_xaxes(
        title_text="token (canonical template)",
        tickvals=list(range(len(ticktext))),
        ticktext=ticktext,
        tickangle=-45,
        range=[-0.6, len(ticktext) - 0.4],
        showgrid=True,
    )
    fig.update_yaxes(title_text="layer (0 at the bottom)", range=[-0.7, n_layers + 0.1], dtick=1)
    fig.update_layout(
        title=title or "Extractive structure: upstream -> informative -> downstream",
        height=max(500, 28 * n_layers + 280),
        width=1050,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.1, "yanchor": "top", "x": 0},
        margin={"t": 70, "b": 170},
        meta={"n_nodes": len(nodes), "n_edges": len(edges)},
    )
    return fig


def _tick_labels(nodes: list[GraphNode], labels: list[str] | None) -> list[str]:
    """The x axis' token labels (from the nodes' own tokens if the graph has no labels)."""
    if labels is None:
        n_pos = max((n.position for n in nodes), default=-1) + 1
        labels = [""] * n_pos
        for n in nodes:
            labels[n.position] = n.token
    return [token_label(t) if t else str(i) for i, t in enumerate(labels)]


def _edge_trace(
    role: str,
    nodes: list[GraphNode],
    edges: list[tuple[int, int]],
    xy: list[tuple[float, float]],
) -> go.Scatter:
    """The edges leaving ``role``'s nodes, as one line trace (breaks between edges)."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for s, t in edges:
        if nodes[s].role != role:
            continue
        xs += [xy[s][0], xy[t][0], None]
        ys += [xy[s][1], xy[t][1], None]
    return go.Scatter(
        x=xs,
        y=ys,
        mode="lines",
        line={"color": EDGE_COLOURS[role], "width": 1.2},
        hoverinfo="skip",
        name=f"possible paths from {role} (reachability, not measured)",
        showlegend=bool(xs),
    )


def _node_trace(role: str, members: list[GraphNode], xy: list[tuple[float, float]]) -> go.Scatter:
    """A role's nodes: sized by |score| within the role, open if negative, faint if the
    bootstrap interval includes 0, the larger ones named; hover shows all three scores."""
    colour = ROLE_COLOURS.get(role, "#777")
    biggest = max((abs(n.score) for n in members if not math.isnan(n.score)), default=0.0) or 1.0
    return go.Scatter(
        x=[x for x, _ in xy],
        y=[y for _, y in xy],
        mode="markers+text",
        name=ROLE_TEXT.get(role, role),
        text=[n.name if abs(n.score) >= 0.3 * biggest else "" for n in members],
        textposition="top center",
        textfont={"size": 9, "color": "#333"},
        marker={
            "color": colour,
            "size": [_size(n.score, biggest) for n in members],
            "symbol": ["circle" if not n.score < 0 else "circle-open" for n in members],
            "line": {"width": 1.5, "color": colour},
            # a node whose bootstrap interval includes 0 is drawn faint, without edges
            "opacity": [0.3 if n.significant is False else 1.0 for n in members],
        },
        customdata=[
            [
                n.name,
                token_label(n.token) if n.token else str(n.position),
                n.layer,
                n.scores.get("upstream", math.nan),
                n.scores.get("informative", math.nan),
                n.scores.get("downstream", math.nan),
            ]
            for n in members
        ],
        hovertemplate=(
            f"<b>%{{customdata[0]}}</b> ({role})<br>token %{{customdata[1]}}, layer "
            "%{customdata[2]}<br>upstream %{customdata[3]:.4g}<br>informative "
            "%{customdata[4]:.4g}<br>downstream %{customdata[5]:.4g}<extra></extra>"
        ),
    )


_ROLE_DY = {"upstream": -0.07, "informative": 0.0, "downstream": 0.07}


def _place(n: GraphNode, n_heads: int) -> tuple[float, float]:
    """(x, y) of a node: MLP above the heads in its (token, layer) cell, heads side by side;
    the same component in several roles is nudged apart vertically."""
    dy = _ROLE_DY.get(n.role, 0.0)
    if n.kind == "mlp":
        return float(n.position), n.layer + 0.22 + dy
    slot = (n.head or 0) + (n_heads if n.kind == "kv_head" else 0)
    width = 2 * n_heads if n.kind == "kv_head" or n_heads > 1 else 1
    dx = 0.0 if width <= 1 else (slot + 0.5) / width * 0.7 - 0.35
    return n.position + dx, n.layer - 0.18 + dy


def _size(score: float, biggest: float) -> float:
    if math.isnan(score):
        return 8.0
    return 7.0 + 23.0 * math.sqrt(abs(score) / biggest)


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(obj, Mapping) and name in obj:
            return obj[name]
        if not isinstance(obj, Mapping) and hasattr(obj, name):
            return getattr(obj, name)
    return default


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _node(i: int, raw: Any, labels: Sequence[str] | None) -> GraphNode:
    comp = _get(raw, "component")
    layer = _get(raw, "layer", default=_get(comp, "layer"))
    kind = _get(raw, "kind", default=_get(comp, "kind"))
    head = _get(raw, "head", default=_get(comp, "head"))
    if isinstance(comp, str) and (layer is None or kind is None):
        layer, kind, head = _parse_component(comp)
    if layer is None or kind is None:
        raise ValueError(f"graph node {raw!r} does not say its layer and component kind")
    position = int(_get(raw, "position", "pos"))
    token = _get(raw, "token", "label", default=None)
    if token is None and labels is not None and 0 <= position < len(labels):
        token = labels[position]
    scores_raw = _get(raw, "scores", default=None) or {}
    scores = {
        role: float(_get(scores_raw, role, default=_get(raw, role, default=math.nan)))
        for role in ROLES
    }
    name = _get(raw, "name", default=None) or _component_name(int(layer), str(kind), head)
    key = _hashable(_get(raw, "id", "key", default=i))
    return GraphNode(
        key,
        str(name),
        int(layer),
        str(kind),
        None if head is None else int(head),
        position,
        str(token or ""),
        str(_get(raw, "role")),
        scores,
        _get(raw, "significant", default=None),
    )


def _component_name(layer: int, kind: str, head: int | None) -> str:
    if kind == "mlp":
        return f"L{layer}.MLP"
    return f"L{layer}.{'KV' if kind == 'kv_head' else 'H'}{head}"


def _parse_component(text: str) -> tuple[int, str, int | None]:
    """``"L3.MLP"``, ``"L3.H2"``, ``"L3.KV1"`` -> (layer, kind, head)."""
    layer_part, _, rest = text.partition(".")
    layer = int(layer_part.lstrip("L"))
    if rest.upper() == "MLP":
        return layer, "mlp", None
    if rest.startswith("KV"):
        return layer, "kv_head", int(rest[2:])
    return layer, "head", int(rest.lstrip("H"))
