"""The extractive structure (docs/method.md §4): upstream -> informative -> downstream components.

>>> from extractive_lens.graph import extractive_graph
>>> graph = extractive_graph(scores, top_k=5)  # doctest: +SKIP  (scores: ExtractiveScores)
>>> print(graph.summary())  # doctest: +SKIP

Nodes are (component, canonical position, role) with all three of the component's scores at that
position (averaged over items, :meth:`ComponentScores.canonical`). Each role selects its nodes by
its own score: by default the ``top_k`` largest in magnitude (and/or ``|score| >= threshold``), so
a strong negative cell is a node like a strong positive one (``select="positive"``: the highest
only). Under grouped-query attention the downstream and upstream roles select among MLPs and
query heads only: their K/V-head scores are a second decomposition of what the query heads carry
(``scores.result.kv_is_additive``), and a K/V node beside its query heads would show one effect
twice. Informative K/V heads own their weights and compete like any component.

Edges are **possible paths**, not measured flow: upstream -> informative and informative ->
downstream wherever the forward pass *could* carry information from the first node to the second
(:func:`can_reach`), whatever the scores; figures label them so. Never to an earlier layer,
never to an earlier position; at one position any later component can read an earlier one's
output (within a layer the heads come before the MLP, and K/V heads before the query heads that
read them); reaching a later position needs attention on the way (MLPs stay at their position).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from extractive_lens.components import Component
from extractive_lens.scores.result import CanonicalScores, ExtractiveScores, kv_is_additive

ROLES = ("upstream", "informative", "downstream")
EDGE_MEANING = (
    "possible path: the forward pass could carry the source node's output to the target node "
    "(reachability only; not a measured flow)"
)
SELECTIONS = ("magnitude", "positive")


@dataclass(frozen=True)
class Node:
    """One selected (component, canonical position) in one role, with all three scores."""

    role: str
    component: Component
    position: int
    token: str
    upstream: float
    informative: float
    downstream: float
    significant: bool | None = None
    """Whether the role score's bootstrap interval over items excludes 0 (None: not tested)."""

    @property
    def id(self) -> str:
        return f"{self.role}:{self.component}@{self.position}"

    @property
    def score(self) -> float:
        """The score of the node's own role."""
        return getattr(self, self.role)

    def to_dict(self) -> dict[str, Any]:
        c = self.component
        return {
            "id": self.id,
            "role": self.role,
            "component": str(c),
            "layer": c.layer,
            "kind": c.kind,
            "head": c.head,
            "position": self.position,
            "token": self.token,
            "upstream": self.upstream,
            "informative": self.informative,
            "downstream": self.downstream,
            "significant": self.significant,
        }


def can_reach(
    a: Component, pa: int, b: Component, pb: int, group_size: int = 1, parallel: bool = False
) -> bool:
    """Whether ``a``'s output at position ``pa`` can influence ``b``'s output at ``pb``.

    ``group_size`` is the number of query heads per K/V head (grouped-query attention). A K/V
    head's output at ``pa`` is read by its query heads at every position from ``pa`` on, so it
    moves information to later positions within its own layer. ``parallel``: attention and MLP
    of a layer read the same residual (GPT-J, Phi, GPT-NeoX, Falcon; ``ModelStructure.parallel``),
    so nothing in a layer's attention reaches that layer's MLP.
    """
    if pa > pb or a.layer > b.layer:
        return False
    feeds_own_mlp = b.kind == "mlp" and not parallel
    if a.layer == b.layer:
        if a.kind == "kv_head":
            return feeds_own_mlp or (b.kind == "head" and b.head // group_size == a.head)
        return a.kind == "head" and feeds_own_mlp and pa == pb
    if pa == pb:
        return True
    # A later position needs attention on the way: a itself (a K/V head), the receiving head,
    # the receiving MLP's own layer's attention (sequential blocks only), or any attention layer
    # strictly between.
    return a.kind == "kv_head" or b.kind == "head" or feeds_own_mlp or b.layer - a.layer > 1


@dataclass
class ExtractiveGraph:
    """Typed nodes and edges of the extractive structure, on canonical positions."""

    nodes: list[Node]
    edges: list[tuple[str, str]]
    labels: tuple[str, ...]
    top_k: int | None = None
    threshold: float | None = None
    n_items: int = 0
    template: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    select: str = "magnitude"

    def by_role(self, role: str) -> list[Node]:
        """The role's nodes, in selection order (largest |score|, or highest score)."""
        key = (lambda n: -abs(n.score)) if self.select == "magnitude" else (lambda n: -n.score)
        return sorted((n for n in self.nodes if n.role == role), key=key)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return {
            "edge_meaning": EDGE_MEANING,
            "labels": list(self.labels),
            "top_k": self.top_k,
            "threshold": self.threshold,
            "select": self.select,
            "n_items": self.n_items,
            "template": self.template,
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [{"source": s, "target": t} for s, t in self.edges],
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    def to_networkx(self) -> Any:
        """A ``networkx.DiGraph``: node ids as in :attr:`Node.id`, attributes as in ``to_dict``."""
        import networkx as nx

        g = nx.DiGraph(labels=list(self.labels), template=self.template, n_items=self.n_items)
        for n in self.nodes:
            attrs = n.to_dict()
            attrs.pop("id")
            g.add_node(n.id, **attrs)
        g.add_edges_from(self.edges)
        return g

    def summary(self, k: int = 5) -> str:
        """The top ``k`` nodes of each role with layer / head / token, and the edge count."""
        lines = [
            f"Extractive graph: {len(self.nodes)} nodes, {len(self.edges)} possible paths"
            + (f" over {self.n_items} items" if self.n_items else "")
            + (f" (template {self.template!r})" if self.template else "")
        ]
        for role in ROLES:
            nodes = self.by_role(role)
            lines.append(f"{role} ({len(nodes)} nodes):")
            for n in nodes[:k]:
                c = n.component
                head = (
                    ""
                    if c.head is None
                    else f" {'kv ' if c.kind == 'kv_head' else ''}head {c.head}"
                )
                lines.append(
                    f"  {str(c):<9} layer {c.layer:>2}{head:<10} pos {n.position:>2} "
                    f"{n.token!r:<12} {role}={n.score:+.4g} "
                    f"(U={n.upstream:+.3g} I={n.informative:+.3g} D={n.downstream:+.3g})"
                )
        return "\n".join(lines)


def _select(
    scores: CanonicalScores, top_k: int | None, threshold: float | None, select: str
) -> list[tuple[Component, int, float]]:
    """The role's nodes: ranked by |score| (``magnitude``) or by score (``positive``), without
    the K/V heads of roles whose K/V scores are not additive (module doc)."""
    entries = scores.entries()
    if not kv_is_additive(scores.role):
        entries = [e for e in entries if e[0].kind != "kv_head"]
    key = (lambda e: abs(e[2])) if select == "magnitude" else (lambda e: e[2])
    entries = sorted(entries, key=lambda e: -key(e))
    if threshold is not None:
        entries = [e for e in entries if key(e) >= threshold]
    return entries[:top_k] if top_k is not None else entries


def extractive_graph(
    scores: ExtractiveScores | Mapping[str, CanonicalScores],
    *,
    top_k: int | None = None,
    threshold: float | None = None,
    template: str | None = None,
    select: str = "magnitude",
    intervals: Mapping[str, tuple[CanonicalScores, CanonicalScores]] | None = None,
) -> ExtractiveGraph:
    """Select each role's nodes and connect them upstream -> informative -> downstream.

    Args:
        scores: an ``ExtractiveScores`` (mapped onto its canonical template) or a mapping from
            role to ``CanonicalScores``.
        top_k: keep each role's ``top_k`` (component, position) pairs with the largest
            |score| (``select="positive"``: the highest score).
        threshold: keep pairs whose |role score| (or score) is at least this. With neither,
            ``top_k=10``.
        template: canonical template for ``ExtractiveScores.canonical``.
        select: ``"magnitude"`` (default: negative cells are shown too) or ``"positive"``.
        intervals: role -> (low, high) bootstrap bounds (``ComponentScores.canonical_interval``).
            With them each node records whether its interval excludes 0, and possible-path
            edges join only nodes that pass that test.
    """
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    if top_k is None and threshold is None:
        top_k = 10
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    canon = scores.canonical(template) if isinstance(scores, ExtractiveScores) else dict(scores)
    missing = [r for r in ROLES if r not in canon]
    if missing:
        raise ValueError(f"extractive_graph needs all three roles; missing {missing}")
    first = canon["informative"]
    nodes = {
        role: [
            Node(
                role,
                c,
                pos,
                first.labels[pos],
                *(float(canon[r].component(c)[pos]) for r in ROLES),
                _excludes_zero(intervals, role, c, pos),
            )
            for c, pos, _ in _select(canon[role], top_k, threshold, select)
        ]
        for role in ROLES
    }
    return ExtractiveGraph(
        nodes=[n for r in ROLES for n in nodes[r]],
        edges=_possible_paths(nodes, first),
        labels=first.labels,
        top_k=top_k,
        threshold=threshold,
        n_items=first.n_items,
        template=first.template,
        select=select,
    )


def _possible_paths(nodes: Mapping[str, list[Node]], first: CanonicalScores) -> list:
    """Edges upstream -> informative -> downstream between nodes that pass the interval test
    (when there is one) and that the architecture lets reach each other."""
    heads, kv = first.heads.shape[-1], first.kv_heads
    group = heads // kv.shape[-1] if kv is not None else 1
    return [
        (a.id, b.id)
        for src, dst in (("upstream", "informative"), ("informative", "downstream"))
        for a in nodes[src]
        for b in nodes[dst]
        if a.significant is not False
        and b.significant is not False
        and can_reach(
            a.component, a.position, b.component, b.position, group, first.parallel_blocks
        )
    ]


def _excludes_zero(
    intervals: Mapping[str, tuple[CanonicalScores, CanonicalScores]] | None,
    role: str,
    c: Component,
    pos: int,
) -> bool | None:
    if intervals is None or role not in intervals:
        return None
    low, high = intervals[role]
    lo, hi = float(low.component(c)[pos]), float(high.component(c)[pos])
    return lo > 0 or hi < 0


__all__ = ["ExtractiveGraph", "Node", "can_reach", "extractive_graph"]
