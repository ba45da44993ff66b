"""A pretraining run's directory: its configuration (``run.json``) and its resumable checkpoint.

:func:`run_key` hashes everything that determines the trained weights; :func:`claim_run_dir`
writes ``run.json`` or checks that the directory holds the same run. ``checkpoint/`` holds weights
(safetensors), optimizer and scheduler state, step, tokens and history, and is replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from extractive_lens.worlds.curricula import CorpusConfig
from extractive_lens.worlds.pretrain_config import ModelConfig, TrainConfig
from extractive_lens.worlds.world import World


def run_key(world: World, corpus: CorpusConfig, model: ModelConfig, train: TrainConfig) -> str:
    """A short hash of everything that determines the trained weights."""
    blob = json.dumps(
        [world.config.to_dict(), corpus.to_dict(), asdict(model), asdict(train)], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def claim_run_dir(
    out: Path,
    world: World,
    corpus: CorpusConfig,
    model: ModelConfig,
    train: TrainConfig,
    steps: int,
) -> None:
    """Create ``out`` and write its ``run.json``, or check that it holds a run of this
    configuration (another configuration is a :class:`FileExistsError`)."""
    key = run_key(world, corpus, model, train)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "key": key,
        "world": world.config.to_dict(),
        "corpus": corpus.to_dict(),
        "model": asdict(model),
        "train": asdict(train),
        "steps": steps,
    }
    if (out / "run.json").exists():
        old = json.loads((out / "run.json").read_text())
        if old.get("key") != key:
            raise FileExistsError(
                f"{out} holds a run with another configuration ({old.get('key')})"
            )
    else:
        (out / "run.json").write_text(json.dumps(meta, indent=1))


def save_checkpoint(
    directory: Path, hf: Any, optimizer: Any, scheduler: Any, step: int, tokens: int, history: list
) -> None:
    """Write the checkpoint to ``directory`` atomically (a partial write never replaces it)."""
    from safetensors.torch import save_file

    tmp = directory.with_name(directory.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state = {k: v.detach().contiguous().clone() for k, v in hf.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        tmp / "optimizer.pt",
    )
    (tmp / "state.json").write_text(
        json.dumps({"step": step, "tokens": tokens, "history": history})
    )
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old.exists():
        shutil.rmtree(old)


def load_checkpoint(
    directory: Path, hf: Any, optimizer: Any, scheduler: Any
) -> tuple[int, int, list]:
    """Restore ``hf``, ``optimizer`` and ``scheduler`` from ``directory``; return step, tokens
    and history (``0, 0, []`` when there is no checkpoint)."""
    if not (directory / "state.json").exists():
        return 0, 0, []
    from safetensors.torch import load_file

    hf.load_state_dict(load_file(str(directory / "model.safetensors")))
    opt = torch.load(directory / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    state = json.loads((directory / "state.json").read_text())
    return int(state["step"]), int(state["tokens"]), list(state["history"])
