"""Moved to :mod:`extractive_lens.cli.run` (the ``extractive-lens run`` subcommand)."""

from extractive_lens.cli.run import EXPERIMENT_CHOICES, load_cli_model, run_command
from extractive_lens.cli.run import add_parsers as add_run_parser

__all__ = ["EXPERIMENT_CHOICES", "add_run_parser", "load_cli_model", "run_command"]
