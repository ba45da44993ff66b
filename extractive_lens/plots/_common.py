"""Shared helpers of the figure functions: colours, number formatting, token labels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: Score roles in reading order of the extractive structure (top row = last in the forward pass).
ROLES = ("downstream", "informative", "upstream")

#: One colour per role, used by the graph and anywhere roles are told apart.
ROLE_COLOURS = {"upstream": "#2ca02c", "informative": "#ff7f0e", "downstream": "#1f77b4"}

#: Diverging scale for signed scores: blue = hurts the answer, white = 0, red = helps it.
DIVERGING = "RdBu_r"

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers rounded, ``(mean, spread)`` pairs as ``m ± s``, None as blank."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return (
            f"{value:.{digits}f}" if abs(value) >= 10 ** (-digits) or value == 0 else f"{value:.2g}"
        )
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int | float) for v in value)
    ):
        return f"{fmt(float(value[0]), digits)} ± {fmt(float(value[1]), digits)}"
    return str(value)


def token_label(token: str) -> str:
    """A token as an axis label: leading space dropped, empty / whitespace tokens shown visibly."""
    text = token.strip()
    if text:
        return text
    return repr(token)


def signed(value: float) -> str:
    return f"{value:+.3g}"


def symmetric_range(values: Sequence[float]) -> float:
    """Half-width of a colour range centred at zero (never 0, so a colour bar can be drawn)."""
    m = max((abs(v) for v in values if not math.isnan(v)), default=0.0)
    return m if m > 0 else 1e-12
