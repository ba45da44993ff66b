"""The command line's shape: each subcommand a subparser with a handler, no argparse bypass."""

from __future__ import annotations

import argparse

import pytest

from extractive_lens.cli import build_parser, main
from extractive_lens.cli import worlds as worlds_cli


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(command path, parser)`` of every subcommand that takes no further subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, (*path, name))


def test_every_subcommand_is_a_subparser_with_a_handler():
    leaves = dict(_leaves(build_parser()))
    assert set(leaves) == {
        ("ocr",),
        ("demo",),
        ("report",),
        ("run",),
        ("subnetworks",),
        ("memorization",),
        ("worlds", "build-default"),
        ("worlds", "ordering"),
        ("worlds", "scores"),
        ("worlds", "ablation"),
    }
    for path, parser in leaves.items():
        assert callable(parser.get_default("handler")), path


def test_worlds_runs_the_same_through_both_entry_points():
    argv = ["--threads", "1", "ablation", "--lr", "0.01", "--layers", "late"]
    direct = worlds_cli.build_parser().parse_args(argv)
    nested = build_parser().parse_args(["worlds", *argv])
    assert direct.handler is nested.handler is worlds_cli.ablation
    assert vars(nested) == vars(direct)
    assert direct.threads == 1 and direct.lr == 0.01 and direct.layers == "late"


def test_usage_errors_exit_2_and_missing_directories_are_reported(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["worlds"])  # a subcommand is required
    assert err.value.code == 2
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a demo output directory" in capsys.readouterr().err
