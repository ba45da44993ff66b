"""Named world models: pretrained once from a fixed spec, cached, loaded as bridges.

``load_model("world-default")`` comes here. The weights are not shipped: the first load pretrains
them from the spec's seeds (1-3 minutes on a CPU) into ``cache_dir()/worlds``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from extractive_lens.worlds.checkpoints import run_key
from extractive_lens.worlds.curricula import CorpusConfig
from extractive_lens.worlds.entities import WorldConfig
from extractive_lens.worlds.generator import make_world
from extractive_lens.worlds.pretrain_config import ModelConfig, TrainConfig
from extractive_lens.worlds.pretrain_loop import pretrain
from extractive_lens.worlds.world import World


@contextlib.contextmanager
def threads(n: int | None):
    """Temporarily limit torch's intra-op threads (``None``: leave as is)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass(frozen=True)
class WorldModelSpec:
    """Everything that determines a named world model's weights."""

    world: WorldConfig = WorldConfig()
    corpus: CorpusConfig = CorpusConfig(repeats=150)
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()


WORLD_MODELS: dict[str, WorldModelSpec] = {"world-default": WorldModelSpec()}
"""Named world models for :func:`load_world_model`."""


def world_model_dir(name: str = "world-default") -> Path:
    """Where :func:`load_world_model` caches ``name``: ``cache_dir()/worlds/<name>-<hash>``."""
    from extractive_lens.models import cache_dir

    spec = _spec(name)
    key = run_key(make_world(spec.world), spec.corpus, spec.model, spec.train)
    return cache_dir() / "worlds" / f"{name}-{key}"


def _spec(name: str) -> WorldModelSpec:
    if name not in WORLD_MODELS:
        raise ValueError(f"unknown world model {name!r}; known: {sorted(WORLD_MODELS)}")
    return WORLD_MODELS[name]


def build_world_model(
    name: str = "world-default", *, progress: bool = True, n_threads: int | None = None
) -> Path:
    """Pretrain the named world model into the cache (resuming a partial run) and return its dir.

    About 1-3 minutes on one CPU thread for ``world-default``. Same name, same weights (on the
    same machine and thread count): the spec fixes every seed.
    """
    spec = _spec(name)
    directory = world_model_dir(name)
    if (directory / "model" / "model.safetensors").exists():
        return directory
    with threads(n_threads):
        pretrain(
            spec.world, spec.corpus, spec.model, spec.train, out_dir=directory, progress=progress
        )
    return directory


def load_world_model(
    name: str = "world-default",
    *,
    build: bool = True,
    progress: bool = True,
    device: Any = None,
    dtype: Any = None,
) -> Any:
    """A named world model as a ``TransformerBridge`` (``load_model("world-default")``).

    The weights are not shipped: the first call pretrains them from the spec's seeds (1-3 minutes
    on a CPU; ``python -m extractive_lens.worlds build-default`` does the same ahead of time) and
    caches them under ``cache_dir()/worlds``. With ``build=False`` a missing model is an error that
    names that command. The world itself is :func:`world_of` ``(name)``. ``device`` and ``dtype``
    are passed to ``load_model``.
    """
    from extractive_lens.models import ModelLoadError, load_model

    directory = world_model_dir(name)
    if not (directory / "model" / "model.safetensors").exists():
        if not build:
            raise ModelLoadError(
                f"world model {name!r} is not built yet ({directory}). Build it (1-3 min on a "
                f"CPU) with: python -m extractive_lens.worlds build-default --name {name}"
            )
        print(f"extractive_lens: pretraining world model {name!r} (1-3 min, cached in {directory})")
        build_world_model(name, progress=progress)
    model = load_model(directory / "model", device=device, dtype=dtype)
    model.cfg.model_name = name
    return model


def world_of(name: str = "world-default") -> World:
    """The world a named world model was pretrained on."""
    return make_world(_spec(name).world)
