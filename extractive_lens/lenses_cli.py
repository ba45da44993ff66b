"""Moved to :mod:`extractive_lens.cli.lenses` (``subnetworks`` and ``memorization``)."""

from extractive_lens.cli.lenses import run_memorization, run_subnetworks

__all__ = ["run_memorization", "run_subnetworks"]
