"""The ``extractive-lens`` command line.

extractive-lens demo --out runs/demo          # the main job: OCR, scores, graphs, report.html
extractive-lens report runs/demo --overwrite  # rebuild report.html from a saved demo, no compute
extractive-lens ocr --dataset first_hop --model smollm2-135m --lr 1e-4 --epochs 8 --out runs/ocr
extractive-lens run freezing --model tiny --config config.yaml --out runs/freezing
extractive-lens subnetworks --model world-default --dataset zong --out runs/core
extractive-lens memorization --model world-default --dataset first_hop --corpus world
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from extractive_lens.models import DTYPES

DATASETS = ("first_hop", "second_hop", "daxwug")
DEMO_LR = 3e-4  # = extractive_lens.demo.DEMO_LR (not imported: it would load plotly for --help)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="smollm2-135m",
        help="smollm2-135m (default), tiny, tiny-gpt2, a local directory, or a hub id",
    )
    p.add_argument("--device", default=None, help="e.g. cpu, cuda (default: cpu)")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))


def _train_args(p: argparse.ArgumentParser, lr: float) -> None:
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the built-in dataset draw")
    p.add_argument("--paraphrases", action="store_true", help="also train paraphrased facts")
    p.add_argument("--out", type=Path, default=None, help="output directory (must be new)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extractive-lens",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ocr = sub.add_parser("ocr", help="finetune on facts, measure implications (experiment 1)")
    ocr.add_argument(
        "--dataset", default="first_hop", help=f"{', '.join(DATASETS)}, or a JSONL dataset file"
    )
    _model_args(ocr)
    _train_args(ocr, lr=1e-4)
    demo = sub.add_parser("demo", help="the main job: OCR, extractive scores, graphs, report")
    _model_args(demo)
    _train_args(demo, lr=DEMO_LR)
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
    rebuild = sub.add_parser("report", help="rebuild report.html of a saved demo (no compute)")
    rebuild.add_argument("dir", type=Path, help="the demo's output directory")
    rebuild.add_argument("--out", type=Path, default=None, help="default: DIR/report.html")
    rebuild.add_argument("--overwrite", action="store_true", help="replace an existing report")
    from extractive_lens.experiments.cli_run import add_run_parser

    add_run_parser(sub)
    from extractive_lens.lenses_cli import add_parsers

    add_parsers(sub, _model_args)
    sub.add_parser(
        "worlds",
        add_help=False,
        help="synthetic worlds: build-default, ordering, scores, ablation (see --help)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worlds"]:
        from extractive_lens.worlds.cli import main as worlds_main

        return worlds_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "ocr":
            run_ocr(args, [args.dataset])
        elif args.command == "demo":
            run_demo_command(args)
        elif args.command == "report":
            from extractive_lens.demo_io import rebuild_report

            print(f"report: {rebuild_report(args.dir, args.out, overwrite=args.overwrite)}")
        elif args.command == "run":
            from extractive_lens.experiments.cli_run import run_command

            return run_command(args)
        elif args.command in ("subnetworks", "memorization"):
            from extractive_lens import lenses_cli

            getattr(lenses_cli, f"run_{args.command}")(args)
    except FloatingPointError as err:  # training diverged: NaN loss or collapsed logits
        print(f"extractive-lens: diverged: {err}", file=sys.stderr)
        return 3
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as err:
        print(f"extractive-lens: error: {err}", file=sys.stderr)
        return 2
    return 0


def run_demo_command(args: argparse.Namespace) -> None:
    from extractive_lens.demo import run_demo

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


def run_ocr(args: argparse.Namespace, datasets: list[str]) -> None:
    from extractive_lens.data import get_dataset
    from extractive_lens.experiments.cli_run import load_cli_model
    from extractive_lens.experiments.ocr import verify_ocr
    from extractive_lens.results import prepare_output_dir

    out = prepare_output_dir(args.out, args.overwrite) if args.out else None
    start = time.perf_counter()
    model = load_cli_model(args)
    results = []
    for name in datasets:
        dataset = get_dataset(name, seed=args.data_seed)
        result = verify_ocr(
            model,
            dataset,
            lr=args.lr,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            paraphrases=args.paraphrases,
            progress=not args.quiet,
        )
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


if __name__ == "__main__":
    raise SystemExit(main())
