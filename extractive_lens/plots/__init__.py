"""Plotly figures of extractive_lens results, each a function returning a ``go.Figure``.

Everything is plain plotly (no graphviz, no JavaScript build step) and works offline.

- :func:`ocr_curves`: mean rank vs epoch per dataset (facts solid, implications dashed, control
  dotted, chance marked).
- :func:`score_heatmaps`: downstream / informative / upstream x MLP / attention, token x layer.
- :func:`head_drilldown`: layer x head scores at one canonical position.
- :func:`graph_figure`: the extractive graph at (token position, layer).
- :func:`table_figure`, :func:`scatter_with_fit`: tables and a fitted scatter (with r²) for the
  experiments (layer freezing, grafting, localisation).
"""

from extractive_lens.plots._common import DIVERGING, ROLE_COLOURS, ROLES
from extractive_lens.plots.curves import SPLIT_STYLES, ocr_curves
from extractive_lens.plots.graph import GraphNode, graph_figure, graph_nodes
from extractive_lens.plots.heatmaps import (
    as_canonical,
    attention_by_layer,
    choose_position,
    head_drilldown,
    head_matrix,
    head_names,
    score_heatmaps,
)
from extractive_lens.plots.tables import linear_fit, scatter_with_fit, table_figure

__all__ = [
    "DIVERGING",
    "ROLES",
    "ROLE_COLOURS",
    "SPLIT_STYLES",
    "GraphNode",
    "as_canonical",
    "attention_by_layer",
    "choose_position",
    "graph_figure",
    "graph_nodes",
    "head_drilldown",
    "head_matrix",
    "head_names",
    "linear_fit",
    "ocr_curves",
    "scatter_with_fit",
    "score_heatmaps",
    "table_figure",
]
