"""Helpers shared by the experiments: evaluation, mean ± spread, tables and saving.

Every experiment returns a frozen result dataclass with ``table()`` (rows of plain values),
``figure()`` (a plotly figure), ``summary()`` (flat ``name -> number`` metrics, what a sweep
aggregates), ``to_dict()`` and ``save(out_dir)``. The helpers here keep those uniform.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import OCRDataset, get_dataset, validate, with_control
from extractive_lens.delta import WeightDelta
from extractive_lens.metrics import ranks
from extractive_lens.results import prepare_output_dir, provenance, write_json


def resolve_dataset(
    dataset: OCRDataset | str | Path, seed: int = 0, tokenizer: Any = None
) -> OCRDataset:
    """The dataset an experiment runs on, checked before any work starts.

    ``dataset`` is an ``OCRDataset``, or a built-in by name / a JSONL file by path. A dataset
    without a ``control_implications`` split gets one (``data.with_control``). With ``tokenizer``
    every split is validated (``data.validate``: empty splits, answers missing from their options,
    colliding first tokens...), so bad data fails at once, naming its split, not after training.
    """
    if isinstance(dataset, str | Path):
        dataset = get_dataset(dataset, seed=seed)
    elif not isinstance(dataset, OCRDataset):
        raise TypeError(
            f"dataset must be an OCRDataset, a built-in name or a path, not {dataset!r}"
        )
    dataset = with_control(dataset)
    if tokenizer is not None:
        validate(dataset, tokenizer)
    return dataset


def head(dataset: OCRDataset, n: int, n_train: int | None = None) -> OCRDataset:
    """A smaller copy of ``dataset`` for quick runs (tests, tutorials on the tiny model).

    Keeps the first ``n`` items of ``facts``, ``implications`` and every extra split aligned with
    them, and the first ``n_train`` (default ``n``) items of the ``train_*`` splits. Splits about
    known entities (``known*``) and ``wug`` are kept whole. Options are unchanged, so chance
    ranks stay the same.
    """
    import dataclasses

    from extractive_lens.data import Split

    if n < 2:
        raise ValueError(f"head: keep at least 2 items (the control pairing needs them), got {n}")
    n_train = n if n_train is None else n_train

    def cut(split: Split) -> Split:
        if split.name.startswith("known") or split.name == "wug":
            return split
        keep = n_train if split.name.startswith("train") else n
        return Split(split.name, split.examples[:keep], split.options, split.description)

    return dataclasses.replace(
        dataset,
        facts=dataset.facts[:n],
        implications=dataset.implications[:n],
        extra=tuple(cut(s) for s in dataset.extra),
    )


def require_splits(dataset: OCRDataset, names: Iterable[str], experiment: str) -> None:
    """Raise a clear ``ValueError`` when ``dataset`` lacks a split the experiment needs."""
    have = dataset.splits()
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(
            f"{experiment} needs the splits {missing} that dataset {dataset.name!r} does not have "
            f"(it has {list(have)}); the built-in daxwug() dataset has them all."
        )
    empty = [n for n in names if not have[n]]
    if empty:
        raise ValueError(f"{experiment}: dataset {dataset.name!r} has empty splits {empty}")


def split_ranks(
    model: TransformerBridge,
    dataset: OCRDataset,
    names: Iterable[str],
    *,
    delta: WeightDelta | Sequence[WeightDelta] | None = None,
    batch_size: int = 32,
) -> dict[str, list[int]]:
    """Per-item ranks of each split, under ``theta`` plus the given delta(s).

    Several deltas are applied one after the other (nested), which reproduces exactly the weights
    a chain of trainings (``finetune(..., base=...)``) produced.
    """
    import contextlib

    deltas = [] if delta is None else [delta] if isinstance(delta, WeightDelta) else list(delta)
    with contextlib.ExitStack() as stack:
        for d in deltas:
            stack.enter_context(d.applied(model))
        return {
            name: ranks(
                model,
                dataset.split(name).examples,
                dataset.options_for(name),
                batch_size=batch_size,
            ).tolist()
            for name in names
        }


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if len(values) else math.nan


def mean_spread(values: Iterable[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min, max and count of finite values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    m = sum(vals) / len(vals)
    std = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": m, "std": std, "min": min(vals), "max": max(vals), "n": len(vals)}


def paired_effect(treated: Sequence[int], control: Sequence[int]) -> tuple[float, float]:
    """Mean of ``control - treated`` per item (positive: treated ranks better) and its SE."""
    if not treated or len(treated) != len(control):
        return math.nan, math.nan
    diffs = torch.tensor(control, dtype=torch.float64) - torch.tensor(treated, dtype=torch.float64)
    se = diffs.std().item() / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    return diffs.mean().item(), se


def chance(n_options: int) -> float:
    """The chance mean rank among ``n_options`` options."""
    return (n_options - 1) / 2


def chance_se(n_options: int, n_items: int) -> float:
    """Standard error of a mean rank of ``n_items`` uniformly random ranks (1.29 for 20 and 20)."""
    return math.sqrt((n_options**2 - 1) / 12) / math.sqrt(max(n_items, 1))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def mean_spread_table(tables: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Combine the ``table()`` rows of several runs (e.g. seeds) cell by cell.

    Rows are matched by position and must agree on their non-numeric cells (the row labels).
    Each numeric cell becomes ``{"mean", "std", "min", "max", "n"}`` (see ``mean_spread``);
    label cells are kept. ``format_cell`` renders such a cell as ``"mean ± std"``.
    """
    if not tables:
        raise ValueError("mean_spread_table: no tables given")
    lengths = {len(t) for t in tables}
    if len(lengths) != 1:
        raise ValueError(f"mean_spread_table: tables have different row counts {sorted(lengths)}")
    out = []
    for rows in zip(*tables, strict=True):
        first = rows[0]
        combined: dict[str, Any] = {}
        for key, value in first.items():
            if is_number(value) or value is None:
                combined[key] = mean_spread(r.get(key) for r in rows if is_number(r.get(key)))
            else:
                labels = {str(r.get(key)) for r in rows}
                if len(labels) != 1:
                    raise ValueError(f"mean_spread_table: rows disagree on {key!r}: {labels}")
                combined[key] = value
        out.append(combined)
    return out


def format_cell(value: Any, digits: int = 2) -> str:
    """A table cell as text: numbers rounded, mean ± spread dicts as ``"m ± s"`` (just ``m`` when
    every run gave the same value), None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, Mapping) and "mean" in value:
        if not value.get("n"):
            return "-"
        if value["n"] == 1 or value.get("min") == value.get("max"):
            return f"{value['mean']:.{digits}f}"  # one run, or identical in every run
        return f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if is_number(value):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 2
) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (all keys of the first row by default)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(c), digits) for c in columns) + " |")
    return "\n".join(lines)


def save_result(
    result: Any,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    deltas: Mapping[str, WeightDelta] | None = None,
    figure: bool = True,
) -> Path:
    """Write ``results.json`` (``result.to_dict()``), optionally ``deltas/<name>.safetensors``
    and ``figure.html`` into a new directory (never silently overwritten)."""
    out = prepare_output_dir(out_dir, overwrite)
    write_json(out / "results.json", result.to_dict())
    for name, delta in (deltas or {}).items():
        delta.save(out / "deltas" / f"{safe_name(name)}.safetensors")
    if figure:
        try:
            result.figure().write_html(out / "figure.html", include_plotlyjs="cdn")
        except Exception as err:  # a figure must never lose the numbers already written
            (out / "figure.error.txt").write_text(f"{type(err).__name__}: {err}\n")
    return out


def safe_name(name: str) -> str:
    """A file-name-safe version of a label such as ``"F,I(F)"`` or ``"first_hop/full"``."""
    keep = [c if c.isalnum() or c in "-_." else "_" for c in name.replace("'", "_prime")]
    return "".join(keep).strip("_") or "unnamed"


def base_dict(experiment: str, result: Any) -> dict[str, Any]:
    """The keys every saved result starts with."""
    return {
        "experiment": experiment,
        "model": result.model,
        "config": result.config,
        "seconds": result.seconds,
        "provenance": provenance(),
    }


def early_late_layers(n_layers: int, early_fraction: float) -> tuple[list[int], list[int]]:
    """Split ``range(n_layers)`` into the first ``floor(fraction * n)`` layers and the rest.

    Both parts are non-empty (the split is clamped to 1 .. n-1): 32 layers and 0.75 give 24 / 8
    (the paper's OLMo-7B), 30 layers give 22 / 8 (SmolLM2-135M).
    """
    if not 0 < early_fraction < 1:
        raise ValueError(f"early_fraction must be strictly between 0 and 1, got {early_fraction}")
    if n_layers < 2:
        raise ValueError(f"an early/late split needs at least 2 layers, the model has {n_layers}")
    n_early = min(max(int(math.floor(early_fraction * n_layers + 1e-9)), 1), n_layers - 1)
    return list(range(n_early)), list(range(n_early, n_layers))


def r_squared(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line ``y = a x + b``: returns ``(r², a, b)`` (NaN when undefined)."""
    pts = [
        (float(a), float(b))
        for a, b in zip(x, y, strict=True)
        if math.isfinite(float(a)) and math.isfinite(float(b))
    ]
    n = len(pts)
    if n < 2:
        return math.nan, math.nan, math.nan
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    syy = sum((p[1] - my) ** 2 for p in pts)
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pts)
    if sxx == 0 or syy == 0:
        return math.nan, math.nan, math.nan
    slope = sxy / sxx
    return sxy * sxy / (sxx * syy), slope, my - slope * mx
