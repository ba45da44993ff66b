"""The experiments of docs/results_lenses.md: subnetworks, memorization and dose on world models.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python docs/make_results_lenses.py pretrain --seeds 0 1 2
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python docs/make_results_lenses.py core memo dose
    python docs/make_results_lenses.py write       # tables (markdown) from the stored runs

Stages (each resumable: a finished seed's JSON in ``--runs`` is reused):

- ``pretrain``: world models per seed (``interleaved`` and ``facts_only`` curricula, repeats 150,
  the ordering experiment's recipe; seed s = world, corpus and initialisation seed).
- ``core`` (a): OCR finetune (``verify_ocr``, lr 1e-3, 10 epochs, paraphrased facts: the world
  ordering experiment's ``all`` recipe) of the ``interleaved`` model on ``zong``, then
  ``heuristic_core`` on the finetuned model: sparsities 0.3 / 0.5 / 0.7, mask seeds 0-2.
- ``memo`` (b): ``memorization`` of ``first_hop`` and ``zong`` against the exact pretraining
  corpus, before and after the same OCR finetune.
- ``dose`` (c), a *continued-training variant* of the curriculum: from the ``facts_only`` model
  (no implications anywhere), train the known people's implications (speaks, lives_in_country,
  zong; templates cycled) k times each (k = 0, 8, 32, one epoch, lr 1e-3, batch 32, block linear
  weights, the known people's facts replayed once per template), then the OCR finetune of
  ``first_hop`` and ``zong``. A graded run (k = 0 / 2 / 8 / 32 for four quarters of the known
  people) adds the per-person memorization test: log-probability vs count over known people.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extractive_lens.experiments.common import markdown_table, mean_spread  # noqa: E402

CURRICULA = ("interleaved", "facts_only")
DOSES = (0, 8, 32)
GRADED = (0, 2, 8, 32)
OCR = {"lr": 1e-3, "epochs": 10, "paraphrases": True, "progress": False}
SMOKE = bool(os.environ.get("LENSES_SMOKE"))
"""A quick end-to-end check of the script on whatever models are in --runs (not for results)."""
if SMOKE:
    OCR["epochs"] = 1


def _world_setup(seed: int, curriculum: str):  # noqa: ANN202
    from extractive_lens.worlds import (
        CorpusConfig,
        ModelConfig,
        TrainConfig,
        WorldConfig,
        make_world,
    )

    world = make_world(WorldConfig(seed=seed))
    return (
        world,
        CorpusConfig(curriculum, True, 150, seed=seed),
        ModelConfig(),
        replace(TrainConfig(), seed=seed),
    )


def model_for(runs: Path, seed: int, curriculum: str) -> Any:
    """The pretrained world model of (seed, curriculum), pretraining it if needed."""
    from extractive_lens.models import load_model
    from extractive_lens.worlds import pretrain

    out = runs / "pretrain" / f"{curriculum}-seed{seed}"
    if not (out / "model" / "model.safetensors").exists():
        world, ccfg, mcfg, tcfg = _world_setup(seed, curriculum)
        start = time.perf_counter()
        pretrain(world, ccfg, mcfg, tcfg, out_dir=out, progress=False)
        print(f"pretrained {curriculum} seed {seed} in {time.perf_counter() - start:.0f} s")
    model = load_model(out / "model")
    model.cfg.model_name = f"world-{curriculum}-seed{seed}"
    return model


def _ocr(model: Any, dataset: Any) -> Any:
    from extractive_lens.experiments.ocr import verify_ocr

    return verify_ocr(model, dataset, **OCR)


def _ocr_row(result: Any) -> dict[str, Any]:
    effect, se = result.ocr_effect()
    return {"final": result.final(), "effect": effect, "se": se, "seconds": result.seconds}


def stage_core(runs: Path, seed: int) -> dict[str, Any]:
    from extractive_lens.subnetworks import heuristic_core

    model = model_for(runs, seed, "interleaved")
    world, *_ = _world_setup(seed, "interleaved")
    data = world.zong()
    ocr = _ocr(model, data)
    start = time.perf_counter()
    from extractive_lens.subnetworks import MaskConfig

    grid = {"sparsities": (0.3, 0.5, 0.7), "seeds": (0, 1, 2)}
    if SMOKE:
        grid = {"sparsities": (0.5,), "seeds": (0, 1), "config": MaskConfig(steps=20)}
    result = heuristic_core(model, data, ocr.delta, **grid)
    result.save(runs / "core" / f"seed{seed}", overwrite=True)
    return {
        "ocr": _ocr_row(ocr),
        "table": result.table(),
        "cores": {str(k): v for k, v in result.cores().items()},
        "overlap": result.overlap(),
        "effective_size": result.effective_size(),
        "top": {r: result.top_components(r) for r in ("informative", "upstream", "downstream")},
        "seconds": time.perf_counter() - start,
    }


def stage_memo(runs: Path, seed: int) -> dict[str, Any]:
    from extractive_lens.memorization import memorization
    from extractive_lens.worlds import build_corpus

    model = model_for(runs, seed, "interleaved")
    world, ccfg, *_ = _world_setup(seed, "interleaved")
    corpus = build_corpus(world, ccfg)
    out = {}
    for name in ("first_hop", "zong"):
        data = world.datasets()[name]
        ocr = _ocr(model, data)
        r = memorization(model, data, corpus, delta=ocr.delta, n_boot=1000, seed=seed)
        out[name] = {"ocr": _ocr_row(ocr), "table": r.table(), "seconds": r.seconds}
    return out


def _continued_examples(world: Any, doses: dict[str, int]) -> list[Any]:
    """Known people's implications, person p repeated doses[p] times (templates cycled), and the
    known people's facts once per template (replay)."""
    from extractive_lens.worlds.generator import RELATIONS

    out = []
    for fact in world.pretraining_facts():
        if fact.group != "known" or fact.entity not in doses:
            continue
        n_templates = len(RELATIONS[fact.relation].templates)
        if fact.role == "implication":
            out += [fact.render(k % n_templates) for k in range(doses[fact.entity])]
        elif fact.role == "fact" and fact.relation == "lives_in":
            out += [fact.render(k) for k in range(n_templates)]
    return out


def _continue(model: Any, examples: list[Any], seed: int) -> Any:
    from extractive_lens.training import finetune

    return finetune(model, examples, lr=1e-3, epochs=1, batch_size=32, seed=seed, progress=False)


def stage_dose(runs: Path, seed: int) -> dict[str, Any]:
    from extractive_lens.memorization import memorization
    from extractive_lens.worlds import build_corpus

    model = model_for(runs, seed, "facts_only")
    world, ccfg, *_ = _world_setup(seed, "facts_only")
    known = [p.name for p in world.people_in("known")]
    out: dict[str, Any] = {"uniform": {}, "graded": {}}
    for k in DOSES:
        train = _continued_examples(world, {p: k for p in known})
        ct = _continue(model, train, seed)
        with ct.delta.applied(model):
            out["uniform"][str(k)] = {
                name: _ocr_row(_ocr(model, world.datasets()[name]))
                for name in ("first_hop", "zong")
            }
        out["uniform"][str(k)]["n_examples"] = len(train)
        out["uniform"][str(k)]["seconds"] = ct.seconds
    graded = {p: GRADED[i * len(GRADED) // len(known)] for i, p in enumerate(known)}
    train = _continued_examples(world, graded)
    ct = _continue(model, train, seed)
    docs = build_corpus(world, ccfg).texts() + [e.text for e in train]
    for name in ("first_hop", "zong"):
        data = world.datasets()[name]
        with ct.delta.applied(model):
            r = memorization(model, data, docs, splits=["known_implications"], seed=seed)
            ocr = _ocr(model, data)
        out["graded"][name] = {"ocr": _ocr_row(ocr), "table": r.table()}
    return out


STAGES = {"core": stage_core, "memo": stage_memo, "dose": stage_dose}


def run(stage: str, runs: Path, seeds: list[int]) -> None:
    for seed in seeds:
        path = runs / stage / f"seed{seed}.json"
        if path.exists():
            continue
        start = time.perf_counter()
        if stage == "pretrain":
            for c in CURRICULA:
                model_for(runs, seed, c)
            continue
        row = STAGES[stage](runs, seed)
        row["wall_seconds"] = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row, indent=1, default=str))
        print(f"{stage} seed {seed}: {row['wall_seconds']:.0f} s", flush=True)


def write(runs: Path, seeds: list[int]) -> None:
    """Print the markdown tables of results_lenses.md from the stored runs."""
    from write_lenses import write_tables

    print(write_tables(runs, seeds, markdown_table, mean_spread))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("stages", nargs="+", choices=["pretrain", *STAGES, "write"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--runs", type=Path, default=Path("runs/lenses"))
    args = p.parse_args(argv)
    for stage in args.stages:
        if stage == "write":
            write(args.runs, args.seeds)
        else:
            run(stage, args.runs, args.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
