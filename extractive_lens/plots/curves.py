"""OCR training curves: mean rank of facts, implications and the control after every epoch."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: How each tracked split is drawn: label, line dash, colour, short end-of-line label.
SPLIT_STYLES = {
    "facts": ("facts (trained)", "solid", "#1f77b4", "facts"),
    "implications": ("implications (OCR test)", "dash", "#d62728", "impl."),
    "control_implications": ("control (deranged pairing)", "dot", "#7f7f7f", "control"),
}


@dataclass(frozen=True)
class Curves:
    """What a curve panel needs, from an ``OCRResult`` or its ``to_dict()`` form."""

    dataset: str
    history: tuple[dict[str, float], ...]
    chance: float
    config: dict[str, Any]
    final_se: dict[str, float] | None = None  # split -> SE over items of the final mean rank


def _se(ranks: Sequence[float]) -> float:
    n = len(ranks)
    if n < 2:
        return 0.0
    mean = sum(ranks) / n
    return math.sqrt(sum((r - mean) ** 2 for r in ranks) / (n - 1) / n)


def curve_data(result: Any) -> Curves:
    """Read a panel's data from an ``OCRResult`` or the dict its ``to_dict()`` / JSON gives."""
    if isinstance(result, Mapping):
        n_options = result.get("n_options", {})
        n = n_options.get("implications") or next(iter(n_options.values()), 20)
        final = result.get("final_ranks") or {}
        return Curves(
            str(result["dataset"]),
            tuple(dict(r) for r in result["history"]),
            (n - 1) / 2,
            dict(result.get("config", {})),
            {k: _se(v) for k, v in final.items()},
        )
    final = getattr(result, "final_ranks", None) or {}
    return Curves(
        result.dataset,
        tuple(result.table()),
        result.chance(),
        dict(result.config),
        {k: _se(v) for k, v in final.items()},
    )


def ocr_curves(results: Any, *, title: str | None = None) -> go.Figure:
    """Mean rank vs epoch, one panel per dataset.

    Facts are solid, implications dashed, the deranged-pairing control dotted; a grey line marks
    chance ((options - 1) / 2). Epoch 0 is before training. Lower is better (0 = always first).
    The last epoch's point carries an error bar of +- 1 standard error over the items (from the
    per-item final ranks), so a gap between implications and control can be read against it.

    Args:
        results: an ``OCRResult``, its ``to_dict()``, or a sequence of either (one panel each).
        title: figure title (default: a description of what is shown).
    """
    runs = [curve_data(r) for r in _as_sequence(results)]
    if not runs:
        raise ValueError("ocr_curves needs at least one result")
    fig = make_subplots(
        rows=1,
        cols=len(runs),
        shared_yaxes=True,
        horizontal_spacing=0.06,
        subplot_titles=[_panel_title(r) for r in runs],
    )
    for i, run in enumerate(runs):
        _add_panel(fig, run, col=i + 1, show_legend=i == 0)
    top = max(max(row.get(s, 0.0) for s in SPLIT_STYLES for row in r.history) for r in runs)
    fig.update_yaxes(
        title_text="mean rank (0 = best)", range=[-0.3, max(top, runs[0].chance) + 1], col=1
    )
    fig.update_layout(
        title=title or "OCR during finetuning: mean rank per epoch (lower is better)",
        height=420,
        width=max(520, 460 * len(runs)),
        legend={"orientation": "h", "y": -0.22, "x": 0},
        margin={"t": 80, "b": 90},
        template="plotly_white",
    )
    return fig


def _add_panel(fig: go.Figure, run: Curves, col: int, show_legend: bool) -> None:
    """One dataset: a labelled curve per tracked split, the chance line, the epoch axis."""
    epochs = [int(row["epoch"]) for row in run.history]
    for split in SPLIT_STYLES:
        if split in run.history[0]:
            _add_curve(fig, run, split, epochs, col, show_legend)
    fig.add_hline(
        y=run.chance,
        line={"dash": "longdashdot", "color": "#444", "width": 1},
        annotation_text=f"chance {run.chance:.1f}",
        annotation_position="bottom left",
        annotation_font={"size": 10, "color": "#444"},
        row=1,
        col=col,
    )
    fig.update_xaxes(
        title_text="epoch (0 = before training)",
        dtick=1,
        range=[-0.3, max(epochs) + 0.9],
        row=1,
        col=col,
    )


def _add_curve(
    fig: go.Figure, run: Curves, split: str, epochs: list[int], col: int, show_legend: bool
) -> None:
    """A split's mean rank per epoch, its final SE as an error bar, its name at the line's end."""
    label, dash, colour, short = SPLIT_STYLES[split]
    y = [float(row[split]) for row in run.history]
    fig.add_trace(
        go.Scatter(
            x=epochs,
            y=y,
            error_y=_final_error_bar((run.final_se or {}).get(split), len(y), colour),
            mode="lines+markers",
            name=label,
            legendgroup=split,
            showlegend=show_legend,
            line={"dash": dash, "color": colour, "width": 2.5},
            marker={"size": 6, "color": colour},
            meta=[run.dataset, split],
            hovertemplate=(
                f"{run.dataset}<br>{label}<br>epoch %{{x}}<br>mean rank %{{y:.2f}}<extra></extra>"
            ),
        ),
        row=1,
        col=col,
    )
    fig.add_annotation(
        x=epochs[-1],
        y=y[-1],
        text=short,
        showarrow=False,
        xanchor="left",
        xshift=6,
        font={"color": colour, "size": 11},
        row=1,
        col=col,
    )


def _final_error_bar(se: float | None, n_points: int, colour: str) -> dict[str, Any] | None:
    """+- 1 SE on the last point only (the per-item ranks exist only for the final epoch)."""
    if se is None:
        return None
    return {
        "type": "data",
        "array": [0.0] * (n_points - 1) + [se],
        "visible": True,
        "color": colour,
        "thickness": 1.5,
        "width": 5,
    }


def _panel_title(run: Curves) -> str:
    cfg = run.config
    bits = [
        f"lr {cfg['lr']:g}" if "lr" in cfg else "",
        f"seed {cfg['seed']}" if "seed" in cfg else "",
    ]
    extra = ", ".join(b for b in bits if b)
    return f"{run.dataset}" + (f" ({extra})" if extra else "")


def _as_sequence(results: Any) -> list[Any]:
    if isinstance(results, Mapping) or not isinstance(results, Sequence):
        return [results]
    return list(results)
