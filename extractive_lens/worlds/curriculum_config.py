"""What the curriculum experiment varies or fixes: curricula, seeds, world, model, finetunes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from extractive_lens.worlds.curricula import CURRICULA
from extractive_lens.worlds.entities import WorldConfig
from extractive_lens.worlds.finetunes import FinetuneSpec
from extractive_lens.worlds.pretrain_config import ModelConfig, TrainConfig

ORDERING_DATASETS = ("first_hop", "second_hop", "zong")
"""The world datasets the curriculum experiment finetunes on (not the built-in datasets of
:data:`extractive_lens.data.DATASETS`)."""
DATASETS = ORDERING_DATASETS
"""The name :data:`ORDERING_DATASETS` had before issue 14; kept importable."""


@dataclass(frozen=True)
class OrderingConfig:
    """Everything the ordering experiment varies or fixes."""

    curricula: tuple[str, ...] = CURRICULA
    seeds: tuple[int, ...] = (0, 1, 2)
    world: WorldConfig = WorldConfig()
    """The world's shape; its seed is replaced by each run's seed."""
    repeats: int = 150
    paraphrases: bool = True
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    """Its seed is replaced by each run's seed."""
    datasets: tuple[str, ...] = ORDERING_DATASETS
    finetunes: tuple[FinetuneSpec, ...] = (
        FinetuneSpec("all"),
        FinetuneSpec("early", layers="early"),
        FinetuneSpec("late", layers="late"),
    )
    """OCR finetunes run on every pretrained model; the first is the headline protocol."""
    save_deltas: bool = True
    """With ``out_dir``: save the first finetune's delta per dataset (for scores later)."""
    scores: bool = False
    """Also compute extractive scores of every finetune (needs ``extractive_lens.scores``)."""
    score_counterfactuals: int = 5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
