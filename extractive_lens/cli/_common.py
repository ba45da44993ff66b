"""What the subcommands share: the model and training options, the model loader, exit statuses.

Every subcommand is a subparser whose ``handler`` (set with ``set_defaults``) takes the parsed
arguments and returns an exit status (None counts as 0); :func:`run_handler` calls it and turns
the errors a user can fix into a one-line message and a status.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from extractive_lens.models import DTYPES

#: Exit status of a training run that diverged (NaN loss or collapsed logits).
EXIT_DIVERGED = 3
#: Exit status of a usage or data error (bad input, an output that exists, a missing file).
EXIT_ERROR = 2


def model_args(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--device`` and ``--dtype``."""
    p.add_argument(
        "--model",
        default="smollm2-135m",
        help="smollm2-135m (default), tiny, tiny-gpt2, a local directory, or a hub id",
    )
    p.add_argument("--device", default=None, help="e.g. cpu, cuda (default: cpu)")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))


def train_args(p: argparse.ArgumentParser, lr: float | None = None) -> None:
    """The finetuning options of ``ocr`` and ``demo``: defaults and help from ``OCRConfig``, the
    one source of the OCR experiment's defaults (``lr``: a subcommand's own default)."""
    from extractive_lens.experiments.settings import OCRConfig

    default, doc = OCRConfig(), {name: text for name, _, text in OCRConfig.describe()}
    for key, kind in (("lr", float), ("epochs", int), ("batch_size", int), ("seed", int)):
        value = lr if key == "lr" and lr is not None else getattr(default, key)
        flag = "--" + key.replace("_", "-")
        p.add_argument(flag, type=kind, default=value, help=doc[key].replace("%", "%%"))
    p.add_argument(
        "--data-seed", type=int, default=default.data_seed, help="seed of the built-in dataset draw"
    )
    p.add_argument("--paraphrases", action="store_true", help="also train paraphrased facts")
    p.add_argument("--out", type=Path, default=None, help="output directory (must be new)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def ocr_config(args: argparse.Namespace) -> Any:
    """The ``OCRConfig`` the training options (``train_args``) describe; options a subcommand
    does not offer keep the config's defaults."""
    from extractive_lens.experiments.settings import OCRConfig

    keys = ("lr", "epochs", "batch_size", "seed", "data_seed", "paraphrases")
    return OCRConfig(**{k: getattr(args, k) for k in keys if hasattr(args, k)})


def load_cli_model(args: argparse.Namespace) -> Any:
    """The model named by ``--model/--device/--dtype``, with its load time printed."""
    from extractive_lens.models import load_model

    start = time.perf_counter()
    model = load_model(args.model, device=args.device, dtype=DTYPES[args.dtype])
    print(
        f"model {args.model}: {model.cfg.n_layers} layers, loaded in "
        f"{time.perf_counter() - start:.1f} s"
    )
    return model


def run_handler(args: argparse.Namespace) -> int:
    """Run the parsed subcommand's handler; its exit status (3: diverged, 2: an error)."""
    try:
        return args.handler(args) or 0
    except FloatingPointError as err:  # training diverged: NaN loss or collapsed logits
        print(f"extractive-lens: diverged: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as err:
        print(f"extractive-lens: error: {err}", file=sys.stderr)
        return EXIT_ERROR
