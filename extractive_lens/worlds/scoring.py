"""Extractive scores of the curriculum experiment's finetunes, and their per-layer profile.

:func:`score_summary` reduces the scores of one finetune to what a table needs;
:func:`score_ordering` scores every finished run of an ordering directory after the fact;
:func:`layer_profile_markdown` tabulates the mean profile per curriculum and dataset.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from extractive_lens.data import OCRDataset
from extractive_lens.worlds.entities import WorldConfig
from extractive_lens.worlds.generator import make_world


def implication_scores(model: Any, delta: Any, dataset: OCRDataset, counterfactuals: int) -> Any:
    """The three extractive scores of the finetune ``delta`` on ``dataset``'s implications."""
    from extractive_lens.scores import extractive_scores

    return extractive_scores(
        model,
        delta,
        dataset.implications,
        dataset.implication_options,
        counterfactuals=counterfactuals,
    )


def score_summary(
    model: Any, delta: Any, dataset: OCRDataset, *, counterfactuals: int = 5, top: int = 5
) -> dict[str, Any]:
    """Extractive scores of a finetune on its implications, reduced to what a table needs.

    Per role: the mean total per item, per-layer MLP and attention totals (per item), and the
    extractive graph (``extractive_lens.graph.extractive_graph`` with ``top_k=top``) as a dict.
    """
    from extractive_lens.graph import extractive_graph

    scores = implication_scores(model, delta, dataset, counterfactuals)
    out: dict[str, Any] = {}
    for role, s in scores.roles().items():
        n = len(s.examples)
        totals = s.layer_totals()
        out[role] = {
            "total": float(s.total()) / n,
            "mlp_by_layer": [v / n for v in totals["mlp"].tolist()],
            "attn_by_layer": [v / n for v in totals["attn"].tolist()],
        }
    graph = extractive_graph(scores, top_k=top)
    out["graph"] = graph.to_dict()
    out["graph_summary"] = graph.summary(k=top)
    return out


def score_ordering(out_dir: str | Path, *, counterfactuals: int = 5, log: Any = print) -> dict:
    """Extractive scores and graphs of every finished run's headline finetune, after the fact.

    Reads each ``<curriculum>-seed<k>/`` of an :func:`ordering_experiment` directory (pretrained
    model and saved deltas), writes ``scores-<dataset>.json`` beside them and returns
    ``{(curriculum, dataset): [summary per seed]}`` (keys joined as ``"curriculum/dataset"``).
    """
    from extractive_lens.delta import WeightDelta
    from extractive_lens.models import load_model

    out: dict[str, list] = {}
    for run in sorted(Path(out_dir).glob("*-seed*")):
        row = json.loads((run / "result.json").read_text())
        model = load_model(run / "pretrain" / "model")
        world = make_world(
            WorldConfig(**json.loads((run / "pretrain" / "run.json").read_text())["world"])
        )
        datasets = world.datasets()
        for name in row["datasets"]:
            path = run / f"scores-{name}.json"
            if path.exists():
                summary = json.loads(path.read_text())
            else:
                start = time.perf_counter()
                delta = WeightDelta.load(run / f"delta-{name}.safetensors", model)
                summary = score_summary(
                    model, delta, datasets[name], counterfactuals=counterfactuals
                )
                summary["seconds"] = time.perf_counter() - start
                path.write_text(json.dumps(summary, indent=1))
                if log:
                    log(f"scored {run.name}/{name} in {summary['seconds']:.1f}s")
            out.setdefault(f"{row['curriculum']}/{name}", []).append(summary)
    return out


def _mean_lists(lists: list[list[float]]) -> list[float]:
    return [statistics.fmean(v) for v in zip(*lists, strict=True)]


def layer_profile_markdown(scored: dict[str, list]) -> str:
    """Per curriculum and dataset: each role's mean per-item score by layer (MLP / attention)."""
    lines = [
        "| curriculum / dataset | role | MLP by layer | attention by layer | total |",
        "|---|---|---|---|---|",
    ]
    for key, runs in scored.items():
        for role in ("upstream", "informative", "downstream"):
            mlp = _mean_lists([r[role]["mlp_by_layer"] for r in runs])
            attn = _mean_lists([r[role]["attn_by_layer"] for r in runs])
            total = statistics.fmean(r[role]["total"] for r in runs)
            lines.append(
                f"| {key} | {role} | {' '.join(f'{v:+.2f}' for v in mlp)} | "
                f"{' '.join(f'{v:+.2f}' for v in attn)} | {total:+.2f} |"
            )
    return "\n".join(lines)
