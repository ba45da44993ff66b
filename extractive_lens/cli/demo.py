"""``extractive-lens demo`` (the main job) and ``extractive-lens report`` (rebuild its report).

extractive-lens demo --out runs/demo          # OCR, scores, graphs, report.html
extractive-lens report runs/demo --overwrite  # rebuild report.html from a saved demo, no compute
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from extractive_lens.cli._common import model_args, train_args
from extractive_lens.demo import DEMO_LR, run_demo


def add_parsers(sub: Any) -> None:
    """Add ``demo`` and ``report`` to the ``extractive-lens`` subcommands."""
    demo = sub.add_parser("demo", help="the main job: OCR, extractive scores, graphs, report")
    model_args(demo)
    train_args(demo, lr=DEMO_LR)
    demo.add_argument("--datasets", nargs="+", default=["first_hop", "second_hop"])
    demo.add_argument(
        "--counterfactuals",
        type=int,
        default=10,
        help="counterfactual items per implication (upstream score)",
    )
    demo.add_argument("--score-seed", type=int, default=3, help="seed of the counterfactual draw")
    demo.add_argument("--top-k", type=int, default=12, help="graph nodes per role")
    demo.add_argument(
        "--save-deltas",
        action="store_true",
        help="also save each finetuned delta (about 540 MB each for SmolLM2-135M)",
    )
    demo.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 is often faster on a shared CPU)",
    )
    demo.set_defaults(handler=run_demo_command)
    rebuild = sub.add_parser("report", help="rebuild report.html of a saved demo (no compute)")
    rebuild.add_argument("dir", type=Path, help="the demo's output directory")
    rebuild.add_argument("--out", type=Path, default=None, help="default: DIR/report.html")
    rebuild.add_argument("--overwrite", action="store_true", help="replace an existing report")
    rebuild.set_defaults(handler=rebuild_report_command)


def run_demo_command(args: argparse.Namespace) -> None:
    run_demo(
        args.model,
        args.out,
        overwrite=args.overwrite,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        data_seed=args.data_seed,
        datasets=args.datasets,
        paraphrases=args.paraphrases,
        counterfactuals=args.counterfactuals,
        score_seed=args.score_seed,
        top_k=args.top_k,
        device=args.device,
        dtype=args.dtype,
        progress=not args.quiet,
        threads=args.threads,
        save_deltas=args.save_deltas,
    )


def rebuild_report_command(args: argparse.Namespace) -> None:
    from extractive_lens.demo_io import rebuild_report

    print(f"report: {rebuild_report(args.dir, args.out, overwrite=args.overwrite)}")
