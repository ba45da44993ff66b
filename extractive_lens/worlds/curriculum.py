"""The curriculum experiment: does the order of facts and implications in pretraining decide OCR?

For every curriculum and seed (:func:`ordering_experiment`): draw the world of that seed, pretrain
a fresh model on its corpus in the curriculum's order (:mod:`.pretrain`), then run the library's
OCR experiment unchanged (``verify_ocr``: Adam, constant lr, answer-token loss, block linear
weights) on the held-out entities' facts of each dataset (``first_hop``, ``second_hop``,
``zong``), and report the implication mean rank beside the deranged-pairing control (method §6).
Optionally the extractive scores of each finetune are computed on its implications
(:mod:`.scoring`). The same seed gives the same world, corpus sampling and initialisation across
curricula, so curricula are compared paired. The result is a
:class:`~extractive_lens.worlds.curriculum_result.PretrainOrderingResult`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from extractive_lens.data import CONTROL, IMPLICATIONS, OCRDataset
from extractive_lens.worlds.curricula import CorpusConfig
from extractive_lens.worlds.curriculum_config import OrderingConfig
from extractive_lens.worlds.curriculum_result import PretrainOrderingResult
from extractive_lens.worlds.finetunes import FinetuneSpec, finetune_ocr
from extractive_lens.worlds.generator import make_world
from extractive_lens.worlds.pretrain_loop import pretrain
from extractive_lens.worlds.scoring import score_summary


def run_one(
    config: OrderingConfig,
    curriculum: str,
    seed: int,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """One pretraining run and its OCR finetunes; the row is also written to ``out_dir``."""
    run_dir = Path(out_dir) / f"{curriculum}-seed{seed}" if out_dir is not None else None
    if run_dir is not None and (run_dir / "result.json").exists():
        row = json.loads((run_dir / "result.json").read_text())
        if row.get("config") != _run_config(config):
            raise FileExistsError(f"{run_dir} holds a run of another configuration")
        return row
    world = make_world(replace(config.world, seed=seed))
    pre = pretrain(
        world,
        CorpusConfig(curriculum, config.paraphrases, config.repeats, seed=seed),
        config.model,
        replace(config.train, seed=seed),
        out_dir=None if run_dir is None else run_dir / "pretrain",
        progress=progress,
    )
    row: dict[str, Any] = {
        "curriculum": curriculum,
        "seed": seed,
        "n_params": pre.n_params,
        "pretrain_steps": pre.history[-1]["step"] if pre.history else 0,
        "pretrain_tokens": pre.history[-1]["tokens"] if pre.history else 0,
        "pretrain_seconds": pre.seconds,
        "pretrain_final": pre.final(),
        "config": _run_config(config),
        "datasets": {},
    }
    datasets = world.datasets()
    for name in config.datasets:
        row["datasets"][name] = {}
        for i, spec in enumerate(config.finetunes):
            save = run_dir / f"delta-{name}.safetensors" if run_dir and i == 0 else None
            row["datasets"][name][spec.name] = ocr_on(
                pre.model, datasets[name], spec, config, None if not config.save_deltas else save
            )
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "result.json").write_text(json.dumps(row, indent=1))
    return row


def _run_config(config: OrderingConfig) -> dict[str, Any]:
    """What determines one run's row (the config without the lists of seeds and curricula), as
    it reads back from JSON."""
    out = config.to_dict()
    del out["seeds"], out["curricula"]
    return json.loads(json.dumps(out))


def ocr_on(
    model: Any,
    dataset: OCRDataset,
    spec: FinetuneSpec,
    config: OrderingConfig,
    delta_path: Path | None = None,
) -> dict:
    """``verify_ocr`` with one finetune recipe, summarised (and scored if configured)."""
    result = finetune_ocr(model, dataset, spec)
    effect, se = result.ocr_effect()
    out = {
        "final": result.final(),
        "precheck": result.precheck,
        "effect": effect,
        "effect_se": se,
        "verdict": result.verdict(),
        "finetune_seconds": result.seconds,
        "chance": result.chance(),
    }
    if config.scores:
        start = time.perf_counter()
        out["scores"] = score_summary(
            model, result.delta, dataset, counterfactuals=config.score_counterfactuals
        )
        out["scores_seconds"] = time.perf_counter() - start
    if delta_path is not None:
        delta_path.parent.mkdir(parents=True, exist_ok=True)
        result.delta.save(delta_path, overwrite=True)
    return out


def ordering_experiment(
    config: OrderingConfig | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    log: Any = print,
) -> PretrainOrderingResult:
    """Run every (curriculum, seed) and aggregate; finished runs in ``out_dir`` are reused."""
    config = config or OrderingConfig()
    start = time.perf_counter()
    rows = []
    for seed in config.seeds:
        for curriculum in config.curricula:
            t = time.perf_counter()
            row = run_one(config, curriculum, seed, out_dir, progress=progress)
            rows.append(row)
            if log:
                summary = ", ".join(
                    f"{k}/{f}: impl {v['final'][IMPLICATIONS]:.2f} ctrl {v['final'][CONTROL]:.2f}"
                    for k, per in row["datasets"].items()
                    for f, v in per.items()
                )
                log(f"[{curriculum} seed {seed}] {time.perf_counter() - t:.0f}s  {summary}")
    result = PretrainOrderingResult(config, rows, time.perf_counter() - start)
    if out_dir is not None:
        out = Path(out_dir)
        (out / "ordering.json").write_text(json.dumps(result.to_dict(), indent=1))
        (out / "ordering.md").write_text(result.markdown() + "\n")
        result.figure().write_html(out / "ordering.html", include_plotlyjs="cdn")
    return result
