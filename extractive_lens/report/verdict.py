"""What a report says in words: the summary rows, the OCR verdicts judged against the control."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def ocr_summary_rows(runs: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per dataset: fact, implication and control mean rank, chance, OCR verdict."""
    rows = []
    for r in runs:
        final = r.final()
        rows.append(
            {
                "dataset": r.dataset,
                "fact rank": final.get("facts", math.nan),
                "implication rank": final.get("implications", math.nan),
                "control rank": final.get("control_implications", math.nan),
                "chance": r.chance(),
                "OCR?": ocr_word(r),
            }
        )
    return rows


def overall_verdict(runs: Sequence[Any]) -> str:
    """One sentence over all datasets: on which did OCR happen, judged against the control."""
    model = runs[0].model.get("name", "this model") if runs else "this model"
    yes = [r.dataset for r in runs if ocr_word(r) == "yes"]
    unjudged = [r.dataset for r in runs if ocr_word(r) == "n/a"]
    no = [r.dataset for r in runs if ocr_word(r) == "no"]
    parts = []
    if yes:
        parts.append(f"OCR happened on {_join(yes)}")
    if no:
        parts.append(
            f"no significant OCR on {_join(no)} (implications not better than the control by "
            "2 standard errors; the per-dataset lines give the numbers)"
        )
    if unjudged:
        parts.append(f"OCR could not be judged on {_join(unjudged)} (facts not learned)")
    controls = sorted({r.control_name() for r in runs if hasattr(r, "control_name")})
    against = " and ".join(controls) or "deranged-pairing control"
    return f"On {model}: " + "; ".join(parts) + f", judged against the {against}."


def ocr_word(result: Any) -> str:
    """``yes`` (OCR happened), ``no`` (not significant) or ``n/a`` (facts not learned)."""
    verdict = result.verdict()
    if " - OCR:" in verdict:
        return "yes"
    if "cannot be judged" in verdict:
        return "n/a"
    return "no"


def verdict_lines(runs: Sequence[Any]) -> list[str]:
    """The overall verdict, then each dataset's verdict (and capability check, if any)."""
    lines = [overall_verdict(runs)]
    for r in runs:
        lines.append(r.verdict())
        if hasattr(r, "capability"):
            lines.append(r.capability())
    return lines


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
