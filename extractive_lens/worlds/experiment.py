"""The world experiments, by the names they had in one module before issue 14.

The curriculum experiment is in :mod:`.curriculum` (its result in :mod:`.curriculum_result`, its
extractive scores in :mod:`.scoring`), the ablation check in :mod:`.ablation`, the finetune
recipes in :mod:`.finetunes`.

Command line (``python -m extractive_lens.worlds --help``)::

    python -m extractive_lens.worlds build-default    # the model of load_model("world-default")
    python -m extractive_lens.worlds ordering --out runs/worlds-ordering --seeds 0 1 2
    python -m extractive_lens.worlds scores --out runs/worlds-ordering   # scores and graphs
    python -m extractive_lens.worlds ablation --out runs/worlds-ablation  # on world-default
"""

from __future__ import annotations

from extractive_lens.worlds.ablation import (
    KNOWN_SPLIT,
    ablated_ranks,
    ablation_check,
    ablation_markdown,
)
from extractive_lens.worlds.curriculum import ocr_on, ordering_experiment, run_one
from extractive_lens.worlds.curriculum_config import DATASETS, ORDERING_DATASETS, OrderingConfig
from extractive_lens.worlds.curriculum_result import (
    PAPER_ORDERING,
    OrderingResult,
    PretrainOrderingResult,
)
from extractive_lens.worlds.entities import WorldConfig
from extractive_lens.worlds.finetunes import FinetuneSpec, finetune_ocr
from extractive_lens.worlds.generator import make_world
from extractive_lens.worlds.scoring import layer_profile_markdown, score_ordering, score_summary
from extractive_lens.worlds.world import World


def default_world() -> World:
    return make_world(WorldConfig())


__all__ = [
    "DATASETS",
    "KNOWN_SPLIT",
    "ORDERING_DATASETS",
    "PAPER_ORDERING",
    "FinetuneSpec",
    "OrderingConfig",
    "OrderingResult",
    "PretrainOrderingResult",
    "ablated_ranks",
    "ablation_check",
    "ablation_markdown",
    "default_world",
    "finetune_ocr",
    "layer_profile_markdown",
    "ocr_on",
    "ordering_experiment",
    "run_one",
    "score_ordering",
    "score_summary",
]
