"""The result of the curriculum (pretraining-order) experiment: rows per run, table, figure.

Not :class:`extractive_lens.experiments.ordering.OrderingResult`, the data-ordering experiment of
continued training on a pretrained model: this one pretrains from scratch under each curriculum.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from extractive_lens.data import CONTROL, FACTS, IMPLICATIONS
from extractive_lens.worlds.curriculum_config import OrderingConfig

PAPER_ORDERING = {"interleaved": 0.8, "facts_first": 1.3, "implications_first": 6.4}
"""The paper's held-out implication mean ranks (OLMo-7B, continued training on dax/zong; its
"joint" order is our ``interleaved``). Lower is better; chance 9.5."""


def _spread(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


@dataclass
class PretrainOrderingResult:
    """Every run of :func:`~extractive_lens.worlds.curriculum.ordering_experiment` and their
    aggregate over seeds."""

    config: OrderingConfig
    rows: list[dict[str, Any]] = field(repr=False)
    seconds: float = 0.0

    def table(self) -> list[dict[str, Any]]:
        """One row per (dataset, finetune, curriculum): mean and sd over seeds of every rank."""
        out = []
        for dataset in self.config.datasets:
            for spec in self.config.finetunes:
                for curriculum in self.config.curricula:
                    runs = [r for r in self.rows if r["curriculum"] == curriculum]
                    if runs:
                        d = [r["datasets"][dataset][spec.name] for r in runs]
                        out.append(_aggregate(dataset, spec.name, curriculum, d))
        return out

    def compute(self) -> dict[str, float]:
        """Seconds spent: pretraining, finetuning, scoring (summed over runs), and wall time."""
        runs = [d for r in self.rows for per in r["datasets"].values() for d in per.values()]
        return {
            "pretrain_seconds": sum(r["pretrain_seconds"] for r in self.rows),
            "finetune_seconds": sum(d["finetune_seconds"] for d in runs),
            "scores_seconds": sum(d.get("scores_seconds", 0.0) for d in runs),
            "runs": len(self.rows),
            "wall_seconds": self.seconds,
        }

    def markdown(self, finetunes: Sequence[str] | None = None) -> str:
        """The table as Markdown (mean ± sd over seeds; ranks among 20 options, chance 9.5)."""
        lines = [
            "| dataset | finetune | curriculum | seeds | fact | implication | control "
            "| control - impl. | latent two-hop (pretrained) | paper |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.table():
            if finetunes is not None and r["finetune"] not in finetunes:
                continue
            paper = PAPER_ORDERING.get(r["curriculum"]) if r["dataset"] == "zong" else None
            lines.append(
                f"| {r['dataset']} | {r['finetune']} | {r['curriculum']} | {r['n_seeds']} | "
                f"{_pm(r, 'fact')} | {_pm(r, 'implication')} | {_pm(r, 'control')} | "
                f"{_pm(r, 'effect')} | {_pm(r, 'latent_pretrain')} | "
                f"{'' if paper is None else paper} |"
            )
        return "\n".join(lines)

    def figure(self, finetune: str | None = None) -> Any:
        """Grouped bars: implication and control rank per curriculum, one panel per dataset."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        finetune = finetune or self.config.finetunes[0].name
        table = [r for r in self.table() if r["finetune"] == finetune]
        fig = make_subplots(
            rows=1,
            cols=len(self.config.datasets),
            subplot_titles=list(self.config.datasets),
            shared_yaxes=True,
        )
        for col, dataset in enumerate(self.config.datasets, start=1):
            rows = [r for r in table if r["dataset"] == dataset]
            x = [r["curriculum"] for r in rows]
            for key, color in (("implication", "#1f77b4"), ("control", "#bbbbbb")):
                fig.add_trace(
                    go.Bar(
                        x=x,
                        y=[r[key] for r in rows],
                        name=key,
                        marker_color=color,
                        error_y={"type": "data", "array": [r[key + "_sd"] for r in rows]},
                        showlegend=col == 1,
                    ),
                    row=1,
                    col=col,
                )
            if dataset == "zong":
                fig.add_trace(
                    go.Scatter(
                        x=list(PAPER_ORDERING),
                        y=list(PAPER_ORDERING.values()),
                        mode="markers",
                        marker={"symbol": "x", "size": 10, "color": "red"},
                        name="paper (OLMo-7B, continued training)",
                    ),
                    row=1,
                    col=col,
                )
        fig.update_layout(
            barmode="group",
            height=420,
            title=f"OCR after pretraining under each curriculum ({finetune} finetune; mean rank "
            "± sd over seeds, lower is better, chance 9.5)",
        )
        return fig

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "rows": self.rows,
            "table": self.table(),
            "compute": self.compute(),
        }


def _aggregate(dataset: str, finetune: str, curriculum: str, d: list[dict]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "dataset": dataset,
        "finetune": finetune,
        "curriculum": curriculum,
        "n_seeds": len(d),
    }
    for key, values in {
        "fact": [x["final"][FACTS] for x in d],
        "implication": [x["final"][IMPLICATIONS] for x in d],
        "control": [x["final"][CONTROL] for x in d],
        "effect": [x["effect"] for x in d],
        "latent_pretrain": [x["precheck"].get("known_latent_implications", math.nan) for x in d],
        "known_impl_pretrain": [x["precheck"].get("known_implications", math.nan) for x in d],
    }.items():
        row[key], row[key + "_sd"] = _spread(values)
    row["per_seed_implication"] = [x["final"][IMPLICATIONS] for x in d]
    row["per_seed_control"] = [x["final"][CONTROL] for x in d]
    row["chance"] = d[0]["chance"]
    return row


def _pm(row: dict[str, Any], key: str) -> str:
    m, s = row[key], row[key + "_sd"]
    if math.isnan(m):
        return "-"
    return f"{m:.2f}" if math.isnan(s) else f"{m:.2f} ± {s:.2f}"


OrderingResult = PretrainOrderingResult
"""The name :class:`PretrainOrderingResult` had before issue 14; kept importable."""
