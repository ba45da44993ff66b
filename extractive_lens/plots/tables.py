"""Tables as figures and a scatter with a fitted line, for the experiments that produce them
(layer freezing, grafting, localisation): the experiments supply the data, these draw it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from extractive_lens.plots._common import fmt


def table_figure(
    rows: Sequence[Mapping[str, Any]],
    title: str | None = None,
    *,
    columns: Sequence[str] | None = None,
    digits: int = 2,
) -> go.Figure:
    """A ``go.Table`` of ``rows`` (one dict per row; columns in first-seen key order).

    Numbers are rounded to ``digits``, ``(mean, spread)`` pairs shown as ``m ± s``, missing cells
    left blank. The cell values are kept as text, so what is drawn is what a test can read back.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[fmt(row.get(c), digits) for row in rows] for c in columns]
    fig = go.Figure(
        go.Table(
            header={
                "values": [f"<b>{c}</b>" for c in columns],
                "align": "left",
                "fill_color": "#e8eef7",
            },
            cells={"values": cells, "align": "left", "height": 26},
        )
    )
    fig.update_layout(
        title=title,
        height=110 + 28 * (len(rows) + 1),
        width=max(500, 140 * len(columns)),
        margin={"t": 50 if title else 10, "b": 10, "l": 10, "r": 10},
    )
    return fig


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares ``(slope, intercept, r²)``; r² is the squared Pearson correlation."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.size < 2:
        raise ValueError(
            f"need two equally long sequences of >= 2 points, got {xs.size}, {ys.size}"
        )
    if np.ptp(xs) == 0:
        return math.nan, math.nan, math.nan
    slope, intercept = np.polyfit(xs, ys, 1)
    r = np.corrcoef(xs, ys)[0, 1] if np.ptp(ys) > 0 else math.nan
    return float(slope), float(intercept), float(r * r)


def scatter_with_fit(
    x: Sequence[float],
    y: Sequence[float],
    labels: Sequence[str] | None = None,
    title: str = "",
    *,
    x_title: str = "x",
    y_title: str = "y",
) -> go.Figure:
    """Points (hover shows each label), the least-squares line, and r² and n in the title.

    Used for the graft-localisation correlation (docs/method.md §5.6): e.g. x = a component's
    informative score of the graft, y = its downstream score of OCR on new names.
    """
    slope, intercept, r2 = linear_fit(x, y)
    xs = [float(v) for v in x]
    ys = [float(v) for v in y]
    text = [str(s) for s in labels] if labels is not None else [f"#{i}" for i in range(len(xs))]
    if len(text) != len(xs):
        raise ValueError(f"{len(text)} labels for {len(xs)} points")
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="markers",
            name="points",
            text=text,
            marker={"size": 7, "color": "#1f77b4", "opacity": 0.75},
            hovertemplate=(
                f"%{{text}}<br>{x_title} %{{x:.4g}}<br>{y_title} %{{y:.4g}}<extra></extra>"
            ),
        )
    )
    if not math.isnan(slope):
        lo, hi = min(xs), max(xs)
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[slope * lo + intercept, slope * hi + intercept],
                mode="lines",
                name=f"fit: y = {slope:.3g} x + {intercept:.3g}",
                line={"color": "#d62728", "width": 2},
                hoverinfo="name",
            )
        )
    r2_text = "n/a" if math.isnan(r2) else f"{r2:.2f}"
    fig.update_layout(
        title=f"{title} (r² = {r2_text}, n = {len(xs)})".strip(),
        xaxis_title=x_title,
        yaxis_title=y_title,
        height=450,
        width=600,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
        meta={"slope": slope, "intercept": intercept, "r2": r2},
    )
    return fig
