"""The report's header: model, datasets, hyperparameters, seeds, library versions, run time."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

from extractive_lens.results import versions


def run_header(
    model: Mapping[str, Any],
    runs: Sequence[Any],
    *,
    extra_config: Mapping[str, Any],
    seconds: float,
) -> dict[str, dict[str, Any]]:
    """``{group: {key: value}}`` of the run, from its model identity and first result's config."""
    cfg = dict(runs[0].config) if runs else {}
    hyper_keys = ("lr", "epochs", "batch_size", "trainable", "paraphrases", "n_train")
    hyper = {k: cfg[k] for k in hyper_keys if k in cfg}
    skip = {"model", "datasets", "seed", "data_seed", "dataset_seed", "score_seed"}
    hyper.update({k: v for k, v in extra_config.items() if k not in hyper and k not in skip})
    seeds = {
        "training seed": cfg.get("seed"),
        "dataset seed": cfg.get("dataset_seed"),
        "counterfactual seed (scores)": extra_config.get("score_seed"),
    }
    datasets = {
        r.dataset: ", ".join(f"{k} {v} options" for k, v in r.n_options.items()) for r in runs
    }
    lib = versions()
    for pkg in ("plotly",):
        try:
            lib[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            lib[pkg] = "not installed"
    wall = {"wall time": f"{seconds:.1f} s", "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    return {
        "Model": {
            k: model[k]
            for k in (
                "name",
                "architecture",
                "n_layers",
                "n_heads",
                "n_kv_heads",
                "d_model",
                "n_params",
            )
            if k in model
        },
        "Datasets": datasets,
        "Hyperparameters": hyper,
        "Seeds": {k: v for k, v in seeds.items() if v is not None},
        "Library versions": lib,
        "Run": wall,
    }
