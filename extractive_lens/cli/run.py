"""The ``extractive-lens run`` subcommand: any experiment, or a sweep, from a config file.

    extractive-lens run freezing --model smollm2-135m --config freezing.yaml --out runs/freezing
    extractive-lens run grafting --model tiny --set lr=3e-3 --set epochs=2 --out runs/graft
    extractive-lens run sweep --model smollm2-135m --config sweep.yaml --out runs/sweep-ocr
    extractive-lens run sweep --model smollm2-135m --config sweep.yaml --out runs/sweep-ocr \
        --executor slurm --partition gpu --gpus-per-task 1 --array-parallelism 8
    extractive-lens run sweep --model tiny --config sweep.yaml --out runs/s \
        --executor local --workers 2

``--config`` is a JSON or YAML mapping of the experiment's keys (``--list`` prints them with their
defaults); ``--set KEY=VALUE`` overrides single keys. A sweep's config holds ``experiment``,
``grid`` and optionally ``fixed`` (see ``experiments.config``); its ``--out`` directory is
resumable: running the same command again skips the finished configurations. ``--executor
slurm`` submits the configurations as one SLURM job array (submitit; each array task loads the
model itself and writes its own record, so the command may be interrupted and rerun at any time);
``--executor local`` runs them in ``--workers`` processes through submitit's local executor;
the default runs them one after another in this process. See docs/cluster.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from extractive_lens.cli._common import load_cli_model, model_args

EXPERIMENT_CHOICES = ("ocr", "freezing", "ordering", "grafting", "localisation", "sweep")


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``run`` to the ``extractive-lens`` subcommands; returns its parser."""
    p = subparsers.add_parser(
        "run",
        help="run an experiment (ocr, freezing, ordering, grafting, localisation) or a sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment", choices=EXPERIMENT_CHOICES)
    model_args(p)
    p.add_argument("--config", type=Path, default=None, help="a .json / .yaml / .yml file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (repeatable; the value is read as YAML)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (new, unless --overwrite; a sweep's may be resumed)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument(
        "--save-deltas",
        action="store_true",
        help="also save the trained weight deltas (large for real models)",
    )
    p.add_argument("--list", action="store_true", help="print the config keys and defaults")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_executor_arguments(p)
    p.set_defaults(handler=run_command)
    return p


def _add_executor_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sweep executor (submitit; pip install 'extractive_lens[cluster]')")
    g.add_argument(
        "--executor",
        default="inline",
        choices=("inline", "local", "slurm"),
        help="inline: here, one by one (default); local: --workers processes; slurm: job array",
    )
    g.add_argument("--workers", type=int, default=2, help="processes of --executor local")
    g.add_argument("--partition", default=None, help="SLURM partition (--executor slurm)")
    g.add_argument("--gpus-per-task", type=int, default=0, help="GPUs per SLURM array task")
    g.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per SLURM array task")
    g.add_argument("--mem-gb", type=float, default=None, help="memory per SLURM array task")
    g.add_argument("--account", default=None, help="SLURM account")
    g.add_argument(
        "--array-parallelism", type=int, default=16, help="SLURM array tasks running at once"
    )
    g.add_argument(
        "--timeout-min",
        type=int,
        default=240,
        help="minutes per array task; at the limit it is requeued (submitit checkpointing)",
    )
    g.add_argument(
        "--submitit-dir",
        type=Path,
        default=None,
        help="submitit's logs and pickles (default: OUT/submitit)",
    )


def run_command(args: argparse.Namespace) -> int:
    """Execute ``extractive-lens run``; returns the exit status (2 on a usage or data error)."""
    try:
        return _run(args)
    except (
        ValueError,
        KeyError,
        FileExistsError,
        RuntimeError,
        TypeError,
        ImportError,
    ) as err:
        print(f"extractive-lens run: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from extractive_lens.experiments.config import load_config, parse_overrides
    from extractive_lens.experiments.registry import EXPERIMENTS, get_experiment

    config = load_config(args.config) if args.config else {}
    config.update(parse_overrides(args.overrides))
    if args.list:
        names = [args.experiment] if args.experiment != "sweep" else list(EXPERIMENTS)
        for name in names:
            spec = EXPERIMENTS[name]
            print(f"{name}: {spec.description}")
            for key, value in spec.defaults.items():
                print(f"  {key} = {value!r}")
        return 0
    if args.experiment == "sweep":
        return _sweep(args, config)
    spec = get_experiment(args.experiment)
    full = spec.config(config)  # unknown keys fail before the model is loaded
    out = None
    if args.out is not None:
        from extractive_lens.results import prepare_output_dir

        out = prepare_output_dir(args.out, args.overwrite)
    model = load_cli_model(args)
    start = time.perf_counter()
    result = spec.run(model, full, not args.quiet)
    _print_result(result)
    print(f"\n{spec.name}: wall time {time.perf_counter() - start:.1f} s")
    if out is not None:
        if spec.name == "ocr":
            result.save(out, overwrite=True)
        else:
            result.save(out, overwrite=True, save_deltas=args.save_deltas)
        print(f"results in {out}")
    return 0


def _sweep(args: argparse.Namespace, config: dict[str, Any]) -> int:
    from extractive_lens.experiments.sweep import sweep

    unknown = sorted(set(config) - {"experiment", "grid", "fixed"})
    if unknown:
        raise ValueError(f"a sweep config holds experiment, grid and fixed; unknown keys {unknown}")
    if "experiment" not in config or "grid" not in config:
        raise ValueError("a sweep config needs 'experiment' and 'grid' (see --help)")
    if args.out is None:
        raise ValueError("a sweep needs --out (the resumable sweep directory)")
    if args.overwrite and args.out.exists():
        import shutil

        shutil.rmtree(args.out)
    executor = _executor(args)
    # Workers load the model themselves: the driver only needs its name.
    model = load_cli_model(args) if executor is None else args.model
    result = sweep(
        config["experiment"],
        config["grid"],
        fixed=config.get("fixed") or {},
        model=model,
        out_dir=args.out,
        executor=executor,
        workers=args.workers if args.executor == "local" else None,
        progress=not args.quiet and executor is None,
        log=print,
        load={"device": args.device, "dtype": args.dtype},
    )
    print()
    print(result.markdown())
    print(
        f"\nsweep: {len(result.records)} configurations ({result.n_resumed} resumed), "
        f"wall time {result.seconds:.1f} s; results in {args.out}"
    )
    if result.errors:
        print(f"sweep: {len(result.errors)} configurations raised (rerun to retry):")
        for r in result.errors:
            print(f"  {r['config']}: {r['error']}")
        return 1
    return 0


def _executor(args: argparse.Namespace) -> Any:
    if args.executor == "inline":
        return None
    from extractive_lens.experiments.cluster import make_executor

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    folder = args.submitit_dir or args.out / "submitit"
    if args.executor == "local":
        return make_executor("local", folder, timeout_min=args.timeout_min)
    return make_executor(
        "slurm",
        folder,
        timeout_min=args.timeout_min,
        partition=args.partition,
        gpus_per_task=args.gpus_per_task,
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        array_parallelism=args.array_parallelism,
        account=args.account,
    )


def _print_result(result: Any) -> None:
    from extractive_lens.experiments.common import markdown_table
    from extractive_lens.experiments.registry import result_table

    print()
    print(markdown_table(result_table(result)))
    for extra in ("verdict", "capability"):
        if hasattr(result, extra):
            print(getattr(result, extra)())
