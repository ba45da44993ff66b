"""Score heatmaps: where (token position, layer) each component type carries the effect.

Inputs are canonical scores (method §3: averaged over items on one canonical template), taken
from an ``ExtractiveScores`` (``.canonical()`` is called), a ``{role: CanonicalScores}`` mapping,
or the ``{role: CanonicalScores.to_dict()}`` form stored in a results JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from extractive_lens.plots._common import DIVERGING, ROLES, symmetric_range, token_label

ROLE_MEANING = {
    "downstream": "old weights turning the new inputs into the answer",
    "informative": "weight change raising the answer's score",
    "upstream": "activations the finetuned model relies on more",
}


def as_canonical(scores: Any, template: str | None = None) -> dict[str, Any]:
    """``{role: CanonicalScores}`` from any of the accepted inputs (see the module docstring);
    raw scores are mapped with ``per_slot=True`` (each token: mean over the items that have it)."""
    from extractive_lens.scores import CanonicalScores, ComponentScores

    if hasattr(scores, "roles") and hasattr(scores, "canonical"):  # figures: per-slot means
        return dict(scores.canonical(template, per_slot=True))
    if not isinstance(scores, Mapping):
        raise TypeError(
            "expected ExtractiveScores or a {role: CanonicalScores} mapping, "
            f"got {type(scores).__name__}"
        )
    out = {}
    for role, value in scores.items():
        if isinstance(value, CanonicalScores):
            out[role] = value
        elif isinstance(value, ComponentScores):
            out[role] = value.canonical(template, per_slot=True)
        elif isinstance(value, Mapping):
            kv = value.get("kv_heads")
            out[role] = CanonicalScores(
                value.get("role", role),
                torch.tensor(value["mlp"], dtype=torch.float64),
                torch.tensor(value["heads"], dtype=torch.float64),
                None if kv is None else torch.tensor(kv, dtype=torch.float64),
                tuple(value["labels"]),
                int(value.get("n_items", 0)),
                value.get("template"),
                None if value.get("counts") is None else tuple(value["counts"]),
                bool(value.get("per_slot", False)),
            )
        else:
            raise TypeError(f"scores[{role!r}] is a {type(value).__name__}, not canonical scores")
    return out


def attention_by_layer(c: Any) -> Tensor:
    """``[pos, layer]``: each attention layer's total, counting each effect once: the query heads,
    plus the K/V heads for informative scores only (``scores.result.attention_total``)."""
    from extractive_lens.scores.result import attention_total

    return attention_total(c.role, c.heads, c.kv_heads)


def head_names(c: Any) -> list[str]:
    """``H0 ..`` for the query heads, then ``KV0 ..`` for grouped-query K/V heads."""
    names = [f"H{h}" for h in range(c.heads.shape[-1])]
    if c.kv_heads is not None:
        names += [f"KV{g}" for g in range(c.kv_heads.shape[-1])]
    return names


def head_matrix(c: Any) -> Tensor:
    """``[pos, layer, head]`` with the K/V heads appended after the query heads."""
    return c.heads if c.kv_heads is None else torch.cat([c.heads, c.kv_heads], dim=-1)


def choose_position(canonical: Mapping[str, Any]) -> int:
    """The canonical position with the largest attention effect: sum over roles and heads of
    |score|, K/V heads only where they add (informative; see ``attention_by_layer``)."""
    from extractive_lens.scores.result import attention_total

    totals = sum(
        attention_total(
            c.role, c.heads.abs(), None if c.kv_heads is None else c.kv_heads.abs()
        ).sum(1)
        for c in canonical.values()
    )
    return int(torch.as_tensor(totals).argmax())


def score_heatmaps(
    scores: Any,
    *,
    title: str | None = None,
    top_heads: int = 3,
    template: str | None = None,
    roles: Sequence[str] = ROLES,
) -> go.Figure:
    """Rows downstream / informative / upstream, columns MLP and attention (summed over heads).

    x = canonical template tokens, y = layer (0 at the bottom). Each row has its own colour scale,
    centred at zero (red = helps the correct answer, blue = hurts it), shared by its two panels so
    MLP and attention are comparable. Hover shows layer, token, value, and for attention the
    ``top_heads`` heads with the largest |score| in that cell.
    """
    canonical = as_canonical(scores, template)
    roles = [r for r in roles if r in canonical]
    if not roles:
        raise ValueError(f"no scores for any of the roles {list(ROLES)}")
    first = canonical[roles[0]]
    labels = [token_label(t) for t in first.labels]
    n_pos, n_layers = first.mlp.shape
    fig = make_subplots(
        rows=len(roles),
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.05,
        vertical_spacing=0.09,
        subplot_titles=[
            t
            for role in roles
            for t in (f"{role} · MLP", f"{role} · {_attention_title(role, first)}")
        ],
    )
    for row, role in enumerate(roles, start=1):
        _add_role_row(fig, canonical[role], role, row, labels, head_names(first), top_heads)
    fig.update_xaxes(
        tickvals=list(range(n_pos)), ticktext=labels, tickangle=-45, range=[-0.5, n_pos - 0.5]
    )
    fig.update_yaxes(range=[-0.5, n_layers - 0.5], dtick=max(1, n_layers // 10))
    fig.update_layout(
        title=title or "Extractive scores by layer and token (red helps the answer, blue hurts)",
        height=300 + 250 * len(roles),
        width=1050,
        margin={"t": 90, "r": 120},
        template="plotly_white",
        meta={"roles": roles, "labels": labels, "n_items": first.n_items},
    )
    return fig


def _add_role_row(
    fig: go.Figure,
    c: Any,
    role: str,
    row: int,
    labels: list[str],
    names: list[str],
    top_heads: int,
) -> None:
    """One role's row: MLP and attention heatmaps sharing one colour scale centred at zero."""
    mlp = c.mlp.double().T.tolist()  # [layer][pos]
    attn = attention_by_layer(c).double().T.tolist()
    heads = head_matrix(c).double()  # [pos, layer, head]
    positions, layers = list(range(len(mlp[0]))), list(range(len(mlp)))
    axis = "coloraxis" if row == 1 else f"coloraxis{row}"
    tok = [[[labels[p]] for p in positions] for _ in layers]
    top = [
        [[labels[p], _top_heads(heads[p, layer].tolist(), names, top_heads)] for p in positions]
        for layer in layers
    ]
    common = {"x": positions, "y": layers, "coloraxis": axis, "xgap": 1, "ygap": 1}
    fig.add_trace(
        go.Heatmap(
            z=mlp,
            customdata=tok,
            name=f"{role} MLP",
            hovertemplate=(
                f"<b>{role} · MLP</b><br>layer %{{y}}<br>token %{{customdata[0]}} "
                "(position %{x})<br>score %{z:.4g}<extra></extra>"
            ),
            **common,
        ),
        row=row,
        col=1,
    )
    fig.add_trace(
        go.Heatmap(
            z=attn,
            customdata=top,
            name=f"{role} attention",
            hovertemplate=(
                f"<b>{role} · attention</b><br>layer %{{y}}<br>token %{{customdata[0]}} "
                "(position %{x})<br>score (all heads) %{z:.4g}<br>top heads: "
                "%{customdata[1]}<extra></extra>"
            ),
            **common,
        ),
        row=row,
        col=2,
    )
    _add_row_colour_axis(fig, axis, role, row, [v for r in mlp + attn for v in r])
    fig.update_yaxes(title_text=f"{role}<br>layer", row=row, col=1)


def _add_row_colour_axis(
    fig: go.Figure, axis: str, role: str, row: int, values: list[float]
) -> None:
    """The row's colour scale, its colour bar on the right at the row's height."""
    lo, hi = fig.get_subplot(row, 1).yaxis.domain
    colorbar = {
        "title": {"text": role, "side": "right"},
        "y": (lo + hi) / 2,
        "len": (hi - lo) * 1.05,
        "x": 1.01,
        "thickness": 14,
        "exponentformat": "e",
    }
    fig.update_layout({axis: _diverging_axis(symmetric_range(values), colorbar)})


def _diverging_axis(m: float, colorbar: dict[str, Any]) -> dict[str, Any]:
    """A colour axis from -m to m centred at zero: red helps the answer, blue hurts it."""
    return {"colorscale": DIVERGING, "cmid": 0, "cmin": -m, "cmax": m, "colorbar": colorbar}


def head_drilldown(
    scores: Any,
    position: int | str | None = None,
    *,
    title: str | None = None,
    template: str | None = None,
    roles: Sequence[str] = ROLES,
) -> go.Figure:
    """Layer × head scores at one canonical position, one panel per role.

    ``position`` is a canonical position index (negative counts from the end) or a token label
    (``"speak"``, matched ignoring the leading space; the last match wins); default: the position
    with the largest attention effect (:func:`choose_position`). Under grouped-query attention the
    K/V heads follow the query heads as ``KV0 ..``: for informative scores they own their
    own weights; for downstream / upstream scores they are a second decomposition of the effect
    the query heads already carry (never added into a total).
    """
    canonical = as_canonical(scores, template)
    roles = [r for r in roles if r in canonical]
    first = canonical[roles[0]]
    labels = [token_label(t) for t in first.labels]
    pos = _resolve_position(position, labels, canonical)
    names = head_names(first)
    n_layers = first.mlp.shape[1]
    fig = make_subplots(
        rows=1,
        cols=len(roles),
        shared_yaxes=True,
        horizontal_spacing=0.08,
        subplot_titles=[f"{role} · heads" for role in roles],
    )
    for col, role in enumerate(roles, start=1):
        _add_head_panel(fig, canonical[role], role, col, pos, labels[pos], names)
    fig.update_yaxes(title_text="layer", row=1, col=1)
    fig.update_xaxes(tickangle=0, tickfont={"size": 10})
    fig.update_yaxes(range=[-0.5, n_layers - 0.5], dtick=max(1, n_layers // 10))
    fig.update_layout(
        title=title
        or f"Per-head scores at token '{labels[pos]}' (position {pos}); red helps the answer",
        height=max(520, 16 * n_layers + 280),
        width=max(650, 380 * len(roles)),
        margin={"t": 90, "b": 140},
        template="plotly_white",
        meta={"position": pos, "token": labels[pos], "heads": names, "roles": roles},
    )
    return fig


def _add_head_panel(
    fig: go.Figure, c: Any, role: str, col: int, pos: int, token: str, names: list[str]
) -> None:
    """One role's layer x head heatmap at ``pos``, with its own colour bar below it."""
    z = head_matrix(c)[pos].double().tolist()  # [layer][head]
    axis = "coloraxis" if col == 1 else f"coloraxis{col}"
    fig.add_trace(
        go.Heatmap(
            z=z,
            x=names,
            y=list(range(len(z))),
            coloraxis=axis,
            xgap=1,
            ygap=1,
            name=f"{role} heads",
            hovertemplate=(
                f"<b>{role}</b><br>layer %{{y}}, head %{{x}}<br>token {token} "
                f"(position {pos})<br>score %{{z:.4g}}<extra></extra>"
            ),
        ),
        row=1,
        col=col,
    )
    lo, hi = fig.get_subplot(1, col).xaxis.domain
    colorbar = {
        "orientation": "h",
        "x": (lo + hi) / 2,
        "len": (hi - lo),
        "y": -0.2,
        "thickness": 12,
        "exponentformat": "e",
    }
    m = symmetric_range([v for row in z for v in row])
    fig.update_layout({axis: _diverging_axis(m, colorbar)})


def _attention_title(role: str, c: Any) -> str:
    """What the attention panel sums, so no reader assumes the K/V path is added twice."""
    from extractive_lens.scores.result import kv_is_additive

    if c.kv_heads is None:
        return "attention (sum over heads)"
    if kv_is_additive(role):
        return "attention (query + K/V heads' weights)"
    return "attention (sum over query heads; K/V path included)"


def _resolve_position(position: int | str | None, labels: list[str], canonical: Any) -> int:
    n = len(labels)
    if position is None:
        return choose_position(canonical)
    if isinstance(position, str):
        want = position.strip()
        matches = [i for i, label in enumerate(labels) if label == want]
        if not matches:
            raise ValueError(f"no canonical token {position!r}; the tokens are {labels}")
        return matches[-1]
    if not -n <= position < n:
        raise IndexError(f"position {position} out of range for {n} canonical positions")
    return position % n


def _top_heads(values: list[float], names: list[str], k: int) -> str:
    order = sorted(range(len(values)), key=lambda i: abs(values[i]), reverse=True)[:k]
    return ", ".join(f"{names[i]} {values[i]:+.3g}" for i in order)
