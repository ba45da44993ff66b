"""Command line of the synthetic worlds: ``extractive-lens worlds ...``, also run as
``python -m extractive_lens.worlds ...``::

python -m extractive_lens.worlds build-default
python -m extractive_lens.worlds ordering --out runs/worlds-ordering --seeds 0 1 2
python -m extractive_lens.worlds scores --out runs/worlds-ordering
python -m extractive_lens.worlds ablation --out runs/worlds-ablation
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extractive_lens.cli._common import run_handler


def add_parsers(sub: Any) -> None:
    """Add ``worlds`` (with its own subcommands) to the ``extractive-lens`` subcommands."""
    worlds = sub.add_parser(
        "worlds",
        help="synthetic worlds: build-default, ordering, scores, ablation (see --help)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_world_commands(worlds)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m extractive_lens.worlds``."""
    parser = argparse.ArgumentParser(
        prog="python -m extractive_lens.worlds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_world_commands(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m extractive_lens.worlds``: the exit status, as ``extractive-lens worlds``."""
    return run_handler(build_parser().parse_args(argv))


def add_world_commands(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and the four subcommands, each with its handler."""
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build-default", help="pretrain the model of load_model('world-default')")
    b.add_argument("--name", default="world-default")
    b.set_defaults(handler=build_default)
    o = sub.add_parser("ordering", help="the curriculum experiment (issue #6, item 4)")
    o.add_argument("--out", type=Path, required=True, help="output dir (finished runs are reused)")
    o.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    o.add_argument("--curricula", nargs="+", default=None)
    o.add_argument("--repeats", type=int, default=150)
    o.add_argument("--no-paraphrases", action="store_true", help="canonical templates only")
    o.add_argument("--layers", type=int, default=4)
    o.add_argument("--d-model", type=int, default=128)
    o.set_defaults(handler=ordering)
    s = sub.add_parser("scores", help="extractive scores and graphs of finished ordering runs")
    s.add_argument("--out", type=Path, required=True, help="the ordering output directory")
    s.add_argument("--counterfactuals", type=int, default=5)
    s.set_defaults(handler=scores)
    a = sub.add_parser("ablation", help="ablate scored vs random components (issue #6, item 5)")
    a.add_argument("--model", default="world-default", help="a world model name or directory")
    a.add_argument("--world-seed", type=int, default=0, help="seed of the model's world")
    a.add_argument("--dataset", nargs="+", default=["first_hop", "second_hop", "zong"])
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--epochs", type=int, default=10)
    a.add_argument("--layers", choices=["early", "late"], default=None, help="default: all")
    a.add_argument("--no-paraphrases", action="store_true", help="finetune on facts only")
    a.add_argument("--n-random", type=int, default=20, help="random draws per k")
    a.add_argument("--out", type=Path, default=None)
    a.set_defaults(handler=ablation)


def _set_threads(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def build_default(args: argparse.Namespace) -> None:
    """Pretrain (or find) the named world model; print where it is."""
    from extractive_lens.worlds.pretrain import build_world_model

    _set_threads(args)
    print(build_world_model(args.name))


def ordering(args: argparse.Namespace) -> None:
    """The curriculum experiment; prints its table and its numbers as JSON."""
    from extractive_lens.worlds.curricula import CURRICULA
    from extractive_lens.worlds.experiment import OrderingConfig, ordering_experiment
    from extractive_lens.worlds.pretrain import ModelConfig

    _set_threads(args)
    config = OrderingConfig(
        curricula=tuple(args.curricula or CURRICULA),
        seeds=tuple(args.seeds),
        repeats=args.repeats,
        paraphrases=not args.no_paraphrases,
        model=ModelConfig(n_layers=args.layers, d_model=args.d_model, d_mlp=4 * args.d_model),
    )
    result = ordering_experiment(config, args.out, progress=False)
    print(result.markdown())
    print(json.dumps(result.compute()))


def scores(args: argparse.Namespace) -> None:
    """Layer profile of the scores of finished ordering runs, written to OUT/scores.md."""
    from extractive_lens.worlds.experiment import layer_profile_markdown, score_ordering

    _set_threads(args)
    table = layer_profile_markdown(score_ordering(args.out, counterfactuals=args.counterfactuals))
    (args.out / "scores.md").write_text(table + "\n")
    print(table)


def ablation(args: argparse.Namespace) -> None:
    """Ablate scored vs random components on each dataset; print, and save with --out."""
    from extractive_lens.worlds.experiment import FinetuneSpec, ablation_check, ablation_markdown

    _set_threads(args)
    model, world = _world_model(args.model, args.world_seed)
    results = []
    for name in args.dataset:
        spec = FinetuneSpec(
            "all" if args.layers is None else args.layers,
            lr=args.lr,
            epochs=args.epochs,
            paraphrases=not args.no_paraphrases,
            layers=args.layers,
        )
        res = ablation_check(model, world.datasets()[name], finetune=spec, n_random=args.n_random)
        print(ablation_markdown(res), flush=True)
        results.append(res)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ablation.json").write_text(json.dumps(results, indent=1))
        (args.out / "ablation.md").write_text(
            "\n\n".join(ablation_markdown(r) for r in results) + "\n"
        )


def _world_model(name: str, world_seed: int) -> tuple[Any, Any]:
    """A world model by name (with its own world), or a model directory with the seeded world."""
    from extractive_lens.models import load_model
    from extractive_lens.worlds.generator import WorldConfig, make_world
    from extractive_lens.worlds.pretrain import WORLD_MODELS, load_world_model

    if name in WORLD_MODELS:
        return load_world_model(name), make_world(WORLD_MODELS[name].world)
    return load_model(name), make_world(WorldConfig(seed=world_seed))
