"""The ``extractive-lens`` command line.

extractive-lens demo --out runs/demo          # the main job: OCR, scores, graphs, report.html
extractive-lens report runs/demo --overwrite  # rebuild report.html from a saved demo, no compute
extractive-lens ocr --dataset first_hop --model smollm2-135m --lr 1e-4 --epochs 8 --out runs/ocr
extractive-lens run freezing --model tiny --config config.yaml --out runs/freezing
extractive-lens subnetworks --model world-default --dataset zong --out runs/core
extractive-lens memorization --model world-default --dataset first_hop --corpus world
extractive-lens worlds ordering --out runs/worlds-ordering --seeds 0 1 2
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from extractive_lens.cli import demo, lenses, ocr, run, worlds
from extractive_lens.cli._common import run_handler
from extractive_lens.cli.demo import run_demo_command
from extractive_lens.cli.ocr import DATASETS, format_history, format_summary, run_ocr
from extractive_lens.demo import DEMO_LR

__all__ = [
    "DATASETS",
    "DEMO_LR",
    "build_parser",
    "format_history",
    "format_summary",
    "main",
    "run_demo_command",
    "run_ocr",
]

#: The subcommand groups in ``--help`` order; each adds its subparsers, each with a handler.
COMMAND_GROUPS = (ocr, demo, run, lenses, worlds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extractive-lens",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``extractive-lens ARGV``; the exit status (2: an error, 3: training diverged)."""
    return run_handler(build_parser().parse_args(argv))
