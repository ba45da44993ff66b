"""Plotly figures for the experiments: tables, curves, grouped bars, fitted scatters, sweep grids.

Only plotly is needed (no kaleido to build a figure; ``fig.write_html`` works everywhere).
Every function returns a ``plotly.graph_objects.Figure``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from extractive_lens.experiments.common import format_cell, r_squared

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def table_figure(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    title: str | None = None,
    digits: int = 2,
) -> go.Figure:
    """A table (``go.Table``) of ``rows``; numbers rounded, mean ± spread cells as ``m ± s``."""
    columns = list(columns or (rows[0] if rows else []))
    cells = [[format_cell(row.get(c), digits) for row in rows] for c in columns]
    fig = go.Figure(
        go.Table(
            header={"values": [f"<b>{c}</b>" for c in columns], "align": "left"},
            cells={"values": cells, "align": "left"},
        )
    )
    fig.update_layout(title=title, height=120 + 30 * len(rows), margin={"t": 50, "b": 10})
    return fig


def curves_figure(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    *,
    x_title: str = "epoch",
    y_title: str = "mean rank",
    title: str | None = None,
    hlines: Mapping[str, float] | None = None,
    vlines: Mapping[str, Sequence[float]] | None = None,
    cols: int = 2,
) -> go.Figure:
    """Line curves in subplots: ``panels[panel][series] = (x, y)``.

    ``hlines[panel]`` draws a dotted horizontal line (e.g. chance); ``vlines[series]`` marks
    x positions (e.g. phase boundaries) in that series' colour.
    """
    names = list(panels)
    cols = max(1, min(cols, len(names)))
    n_rows = max(1, math.ceil(len(names) / cols))
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=names, shared_xaxes=False)
    series_names = list(dict.fromkeys(s for p in panels.values() for s in p))
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series_names)}
    for i, panel in enumerate(names):
        r, c = i // cols + 1, i % cols + 1
        for series, (x, y) in panels[panel].items():
            fig.add_trace(
                go.Scatter(
                    x=list(x),
                    y=list(y),
                    mode="lines+markers",
                    name=series,
                    line={"color": colour[series]},
                    legendgroup=series,
                    showlegend=i == 0,
                ),
                row=r,
                col=c,
            )
            for xv in (vlines or {}).get(series, ()):
                fig.add_vline(
                    x=xv, line={"color": colour[series], "dash": "dot", "width": 1}, row=r, col=c
                )
        if hlines and panel in hlines:
            fig.add_hline(y=hlines[panel], line={"color": "grey", "dash": "dot"}, row=r, col=c)
        fig.update_xaxes(title_text=x_title, row=r, col=c)
        fig.update_yaxes(title_text=y_title, row=r, col=c)
    fig.update_layout(title=title, height=320 * n_rows + 60)
    return fig


def grouped_bars_figure(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    errors: Mapping[str, Sequence[float | None]] | None = None,
    title: str | None = None,
    y_title: str = "mean rank",
    hline: float | None = None,
) -> go.Figure:
    """Grouped bars: one group per entry of ``groups``, one bar per series (None = missing)."""
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        err = (errors or {}).get(name)
        fig.add_trace(
            go.Bar(
                x=list(groups),
                y=[math.nan if v is None else v for v in values],
                name=name,
                marker={
                    "color": PALETTE[i % len(PALETTE)],
                    "pattern": {"shape": "/" if name.startswith("paper") else ""},
                },
                error_y=None
                if err is None
                else {"type": "data", "array": [0 if e is None else e for e in err]},
            )
        )
    if hline is not None:
        fig.add_hline(
            y=hline,
            line={"color": "grey", "dash": "dot"},
            annotation_text="chance",
            annotation_position="top left",
        )
    fig.update_layout(barmode="group", title=title, yaxis_title=y_title)
    return fig


def scatter_fit_figure(
    panels: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[str]]],
    *,
    x_title: str,
    y_title: str,
    title: str | None = None,
    paper_r2: Mapping[str, float] | None = None,
) -> go.Figure:
    """Scatter plots with a least-squares line and r² in each subplot's title.

    ``panels[name] = (x, y, labels)``; ``paper_r2[name]`` adds the paper's r² to the title.
    """
    names = list(panels)
    titles = []
    for name in names:
        x, y, _ = panels[name]
        r2 = r_squared(x, y)[0]
        ref = f", paper {paper_r2[name]:.2f}" if paper_r2 and name in paper_r2 else ""
        titles.append(f"{name}: r² = {r2:.2f}{ref}")
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=titles)
    for i, name in enumerate(names):
        x, y, labels = panels[name]
        fig.add_trace(
            go.Scatter(
                x=list(x),
                y=list(y),
                mode="markers",
                text=list(labels),
                name=name,
                marker={"color": PALETTE[i % len(PALETTE)], "size": 6, "opacity": 0.7},
                hovertemplate="%{text}<br>x=%{x:.3g}<br>y=%{y:.3g}<extra></extra>",
            ),
            row=1,
            col=i + 1,
        )
        _, slope, intercept = r_squared(x, y)
        finite = [float(v) for v in x if math.isfinite(float(v))]
        if finite and math.isfinite(slope):
            lo, hi = min(finite), max(finite)
            fig.add_trace(
                go.Scatter(
                    x=[lo, hi],
                    y=[slope * lo + intercept, slope * hi + intercept],
                    mode="lines",
                    line={"color": "black", "dash": "dash"},
                    name="least squares",
                    showlegend=i == 0,
                ),
                row=1,
                col=i + 1,
            )
        fig.update_xaxes(title_text=x_title, row=1, col=i + 1)
        fig.update_yaxes(title_text=y_title, row=1, col=i + 1)
    fig.update_layout(title=title, height=420)
    return fig


def grid_figure(
    cells: Sequence[Mapping[str, Any]],
    *,
    x: str,
    y: str | None,
    metrics: Sequence[str],
    title: str | None = None,
    cols: int = 2,
) -> go.Figure:
    """Heatmaps of aggregated sweep cells: one subplot per metric, ``x`` by ``y`` configuration
    keys, colour = mean, text = ``"mean ± std"``. ``cells`` rows hold the config keys and, per
    metric, a ``mean_spread`` dict. Without ``y`` every subplot is a single row."""
    xs = sorted({_key(c.get(x)) for c in cells}, key=_sort_key)
    ys = sorted({_key(c.get(y)) for c in cells}, key=_sort_key) if y else ["all"]
    cols = max(1, min(cols, len(metrics)))
    n_rows = max(1, math.ceil(len(metrics) / cols))
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=list(metrics))
    for i, metric in enumerate(metrics):
        z = [[math.nan] * len(xs) for _ in ys]
        text = [[""] * len(xs) for _ in ys]
        for c in cells:
            stats = c.get(metric)
            if not isinstance(stats, Mapping):
                continue
            row = ys.index(_key(c.get(y))) if y else 0
            col = xs.index(_key(c.get(x)))
            z[row][col] = stats.get("mean", math.nan)
            text[row][col] = format_cell(stats)
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[str(v) for v in xs],
                y=[str(v) for v in ys],
                text=text,
                texttemplate="%{text}",
                colorscale="Viridis_r",
                showscale=False,
            ),
            row=i // cols + 1,
            col=i % cols + 1,
        )
        fig.update_xaxes(title_text=x, type="category", row=i // cols + 1, col=i % cols + 1)
        fig.update_yaxes(title_text=y or "", type="category", row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(title=title, height=300 * n_rows + 80)
    return fig


def _key(value: Any) -> Any:
    return value if isinstance(value, int | float | str) or value is None else str(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))
