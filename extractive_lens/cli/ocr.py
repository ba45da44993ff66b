"""``extractive-lens ocr``: finetune on a dataset's facts, measure its implications (experiment 1).

extractive-lens ocr --dataset first_hop --model smollm2-135m --lr 1e-4 --epochs 8 --out runs/ocr
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from extractive_lens.cli._common import load_cli_model, model_args, ocr_config, train_args

DATASETS = ("first_hop", "second_hop", "daxwug")


def add_parsers(sub: Any) -> None:
    """Add ``ocr`` to the ``extractive-lens`` subcommands."""
    ocr = sub.add_parser("ocr", help="finetune on facts, measure implications (experiment 1)")
    ocr.add_argument(
        "--dataset", default="first_hop", help=f"{', '.join(DATASETS)}, or a JSONL dataset file"
    )
    model_args(ocr)
    train_args(ocr)
    ocr.set_defaults(handler=_ocr)


def _ocr(args: argparse.Namespace) -> None:
    run_ocr(args, [args.dataset])


def run_ocr(args: argparse.Namespace, datasets: list[str]) -> None:
    """Finetune on each dataset in turn; print its history and the summary, save with --out."""
    from extractive_lens.data import get_dataset
    from extractive_lens.experiments.ocr import verify_ocr
    from extractive_lens.results import prepare_output_dir

    out = prepare_output_dir(args.out, args.overwrite) if args.out else None
    start = time.perf_counter()
    model = load_cli_model(args)
    results = []
    for name in datasets:
        dataset = get_dataset(name, seed=args.data_seed)
        result = verify_ocr(model, dataset, config=ocr_config(args), progress=not args.quiet)
        print(format_history(result))
        if out is not None:
            result.save(out / dataset.name, overwrite=False)
        results.append(result)
    print(format_summary(results))
    print(f"total wall time {time.perf_counter() - start:.1f} s")
    if out is not None:
        print(f"results in {out}")


def format_history(result) -> str:
    rows = result.table()
    keys = [k for k in rows[0] if k != "epoch"]
    lines = [
        f"\n{result.dataset} (lr {result.config['lr']:g}, seed {result.config['seed']})",
        "epoch " + " ".join(f"{k:>20}" for k in keys),
    ]
    lines += [f"{row['epoch']:>5} " + " ".join(f"{row[k]:>20.3f}" for k in keys) for row in rows]
    if result.precheck:
        lines.append(
            "pre-check before training: "
            + ", ".join(f"{k} {v:.2f}" for k, v in result.precheck.items())
        )
    return "\n".join(lines)


def format_summary(results) -> str:
    lines = ["", f"{'dataset':<12} {'fact':>6} {'impl.':>6} {'control':>8} {'chance':>7}  verdict"]
    for r in results:
        f = r.final()
        lines.append(
            f"{r.dataset:<12} {f.get('facts', float('nan')):>6.2f} "
            f"{f.get('implications', float('nan')):>6.2f} "
            f"{f.get('control_implications', float('nan')):>8.2f} {r.chance():>7.1f}  "
            f"{r.verdict().split(' - ', 1)[-1]}"
        )
    return "\n".join(lines)
