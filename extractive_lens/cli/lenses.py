"""``extractive-lens subnetworks`` and ``extractive-lens memorization``: the two related lenses.

extractive-lens subnetworks --model world-default --dataset zong --out runs/core
extractive-lens memorization --model world-default --dataset first_hop --corpus world --out runs/mem
extractive-lens memorization --model smollm2-135m --dataset first_hop --corpus my.jsonl --out m

Both first run the OCR finetune (``verify_ocr``; ``--delta`` loads a saved one instead, ``--lr 0``
analyses the model as it is), then the analysis, print its tables and save them with ``--out``.
``--dataset`` names a built-in dataset or a JSONL file; with a world model (``world-*``) it names
one of that world's datasets (first_hop, second_hop, zong, country).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from extractive_lens.cli._common import model_args, ocr_config


def add_parsers(sub: Any) -> None:
    """Add ``subnetworks`` and ``memorization`` to the ``extractive-lens`` subcommands."""
    s = sub.add_parser("subnetworks", help="head/MLP mask subnetworks and the heuristic core")
    _common(s)
    s.add_argument("--sparsities", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    s.add_argument("--mask-seeds", nargs="+", type=int, default=[0, 1, 2])
    s.add_argument("--steps", type=int, default=400, help="mask-training steps")
    s.add_argument("--margin", type=float, default=1.0, help="mean-rank margin (effective size)")
    s.add_argument("--top-k", type=int, default=5, help="top components per score role")
    s.set_defaults(handler=run_subnetworks)
    m = sub.add_parser("memorization", help="corpus co-occurrence counts vs the model (task-gram)")
    _common(m)
    m.add_argument(
        "--corpus",
        nargs="+",
        required=True,
        help="'world' (a world model's exact pretraining corpus) or text / JSONL(.gz) files",
    )
    m.add_argument("--text-field", default="text", help="JSONL field holding the text")
    m.add_argument("--unit", choices=["document", "window"], default="document")
    m.add_argument("--window", type=int, default=16, help="window half-width in tokens")
    m.add_argument("--pairs", choices=["entity", "ngrams"], default="entity")
    m.add_argument("--alpha", type=float, default=1.0, help="Lidstone smoothing of P_tg")
    m.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    m.set_defaults(handler=run_memorization)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="first_hop", help="dataset name or JSONL file")
    model_args(p)
    p.add_argument("--data-seed", type=int, default=0, help="seed of the built-in dataset draw")
    p.add_argument("--delta", type=Path, default=None, help="a saved OCR delta (.safetensors)")
    p.add_argument("--lr", type=float, default=1e-3, help="OCR finetune lr (0: no finetune)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--paraphrases", action="store_true", help="also train paraphrased facts")
    p.add_argument("--seed", type=int, default=0, help="OCR finetune seed")
    p.add_argument("--out", type=Path, default=None, help="output directory (must be new)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")


def _dataset(args: argparse.Namespace) -> Any:
    from extractive_lens.data import get_dataset

    if str(args.model).startswith("world-"):
        from extractive_lens.worlds import world_of

        sets = world_of(args.model).datasets()
        if args.dataset not in sets:
            raise ValueError(f"world datasets are {sorted(sets)}, not {args.dataset!r}")
        return sets[args.dataset]
    return get_dataset(args.dataset, seed=args.data_seed)


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Model, dataset and the OCR delta (or None)."""
    from extractive_lens.delta import WeightDelta
    from extractive_lens.experiments.ocr import verify_ocr
    from extractive_lens.models import DTYPES, load_model

    model = load_model(args.model, device=args.device, dtype=DTYPES[args.dtype])
    dataset = _dataset(args)
    if args.delta is not None:
        return model, dataset, WeightDelta.load(args.delta, model)
    if args.lr <= 0:
        return model, dataset, None
    ocr = verify_ocr(model, dataset, config=ocr_config(args), progress=not args.quiet)
    print(ocr.verdict())
    return model, dataset, ocr.delta


def run_subnetworks(args: argparse.Namespace) -> None:
    from extractive_lens.results import prepare_output_dir
    from extractive_lens.subnetworks import MaskConfig, heuristic_core

    out = prepare_output_dir(args.out, args.overwrite) if args.out else None
    start = time.perf_counter()
    model, dataset, delta = _prepare(args)
    result = heuristic_core(
        model,
        dataset,
        delta,
        sparsities=args.sparsities,
        seeds=args.mask_seeds,
        config=MaskConfig(steps=args.steps),
        margin=args.margin,
        top_k=args.top_k,
        progress=not args.quiet,
    )
    print(result.markdown())
    _finish(result, out, start)


def run_memorization(args: argparse.Namespace) -> None:
    from extractive_lens.memorization import memorization, read_documents
    from extractive_lens.results import prepare_output_dir

    out = prepare_output_dir(args.out, args.overwrite) if args.out else None
    start = time.perf_counter()
    model, dataset, delta = _prepare(args)
    if args.corpus == ["world"]:
        if not str(args.model).startswith("world-"):
            raise ValueError("--corpus world needs a world model (--model world-default)")
        from extractive_lens.worlds import WORLD_MODELS, build_corpus, world_of

        corpus: Any = build_corpus(world_of(args.model), WORLD_MODELS[args.model].corpus)
    else:
        corpus = read_documents(args.corpus, text_field=args.text_field)
    result = memorization(
        model,
        dataset,
        corpus,
        delta=delta,
        pairs=args.pairs,
        unit=args.unit,
        window=args.window,
        alpha=args.alpha,
        n_boot=args.n_boot,
        progress=not args.quiet,
    )
    print(result.markdown())
    _finish(result, out, start)


def _finish(result: Any, out: Path | None, start: float) -> None:
    if out is not None:
        result.save(out, overwrite=True)  # the directory was checked (new or --overwrite) above
        print(f"results in {out}")
    print(f"total wall time {time.perf_counter() - start:.1f} s")
