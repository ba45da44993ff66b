"""The report's figures with their captions: the OCR section, and per demo dataset its scores.

Each caption says in one sentence how to read the figure. A dataset whose facts were not learned
gets no score figures, and its graph is withheld unless OCR was established there; the report
says which figures were withheld and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from extractive_lens.report.header import run_header
from extractive_lens.report.page import Report
from extractive_lens.report.verdict import ocr_summary_rows, ocr_word, verdict_lines

OCR_SECTION = "Out-of-context reasoning"

#: Prefix of the score figures' captions where OCR was not established.
UNRELIABLE = "UNRELIABLE as structure (OCR was not established on this dataset): "


def add_ocr_figures(rep: Report, runs: Sequence[Any]) -> None:
    """The training curves and the final-rank table."""
    from extractive_lens.plots import ocr_curves, table_figure

    chance = runs[0].chance()
    rep.add(
        "ocr_curves",
        ocr_curves(runs),
        f"Mean rank after each epoch (0 = best, grey line = chance {chance:.1f}) of the trained "
        "facts (solid), their never-trained implications (dashed) and the deranged-pairing "
        "control (dotted); OCR shows as the dashed line ending clearly below the dotted one.",
        section=OCR_SECTION,
    )
    rep.add(
        "summary_table",
        table_figure(ocr_summary_rows(runs), "Final mean ranks (lower is better)"),
        "Final mean rank per dataset after finetuning on the facts; an implication rank well "
        "below the control rank means the model answers the implications for the right entity.",
        section=OCR_SECTION,
    )


def demo_report(demo: Any, title: str | None) -> Report:
    """A ``DemoResult``'s report: header, verdicts, notes, OCR section, each dataset's scores."""
    runs = [run.ocr for run in demo.runs]
    rep = Report(title or f"extractive_lens demo on {demo.model.get('name', 'a model')}")
    rep.header = run_header(demo.model, runs, extra_config=dict(demo.config), seconds=demo.seconds)
    rep.paragraphs.append(("Did out-of-context reasoning happen?", verdict_lines(runs)))
    if demo.notes:  # diverged datasets, skipped scores: what the figures below do not show
        rep.paragraphs.append(("Notes", list(demo.notes)))
    add_ocr_figures(rep, runs)
    withheld = []
    for run in demo.runs:
        if run.canonical is not None:
            withheld += _add_dataset_figures(rep, run)
    if withheld:
        rep.paragraphs.append(("Figures withheld", withheld))
    return rep


def _add_dataset_figures(rep: Report, run: Any) -> list[str]:
    """One dataset's score figures (and graph, where OCR was established); what was withheld."""
    name = run.dataset
    if ocr_word(run.ocr) == "n/a":  # facts not learned: the scores describe nothing
        return [f"{name}: no score figures, since the facts were not learned."]
    established = ocr_word(run.ocr) == "yes"
    first = next(iter(run.canonical.values()))
    section = f"Extractive scores: {name} ({first.n_items} implications)"
    _add_score_figures(rep, run, section, caveat="" if established else UNRELIABLE)
    if run.graph is None:
        return []
    if not established:
        return [
            f"{name}: the extractive graph is withheld, since OCR was not established; "
            "its scores are in the heatmaps above and in scores.json."
        ]
    _add_graph(rep, run, section)
    return []


def _add_score_figures(rep: Report, run: Any, section: str, caveat: str) -> None:
    """The heatmaps by layer and token, and the per-head drill-down at the key token."""
    from extractive_lens.plots import head_drilldown, score_heatmaps

    name = run.dataset
    rep.add(
        f"{name}_heatmaps",
        score_heatmaps(run.canonical, title=f"{name}: extractive scores by layer and token"),
        caveat + "Each cell is a component at one token (x, the canonical template) and layer "
        "(y, 0 at the bottom), MLP on the left and the layer's attention total on the right "
        "(query heads; for informative scores also the K/V heads, which own separate weights), "
        "averaged over the implications; red helps the correct answer, blue hurts it, "
        "and the rows are the downstream, informative and upstream scores.",
        section=section,
    )
    drill = head_drilldown(run.canonical, title=None)
    meta = drill.layout.meta
    rep.add(
        f"{name}_heads",
        drill,
        caveat
        + f"Per-head scores at the token '{meta['token']}' (position {meta['position']}, where "
        "attention matters most), one panel per role with layer on y and head on x (K/V heads "
        "of grouped-query attention as KV columns); red helps the answer, blue hurts it.",
        section=section,
    )


def _add_graph(rep: Report, run: Any, section: str) -> None:
    from extractive_lens.plots import graph_figure

    rep.add(
        f"{run.dataset}_graph",
        graph_figure(run.graph, title=f"{run.dataset}: extractive structure"),
        "Each node is a component at (token, layer) with one of the largest |scores| of "
        "its role (green upstream, orange informative, blue downstream), sized by |score| "
        "within its role, open markers negative (hurting the answer), faint ones with a "
        "95% bootstrap interval over items that includes 0, and lines possible paths only "
        "(the later node can read the earlier one, both intervals exclude 0), not "
        "measured flow; hover a node for all three scores.",
        section=section,
    )
