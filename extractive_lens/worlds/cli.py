"""Moved to :mod:`extractive_lens.cli.worlds` (``python -m extractive_lens.worlds``)."""

from extractive_lens.cli.worlds import build_parser, main

__all__ = ["build_parser", "main"]
