"""Synthetic worlds: pretrain small models from scratch and study OCR with full control of the data.

>>> from extractive_lens.worlds import make_world, build_corpus, CorpusConfig
>>> world = make_world()                                  # seeded: same config, same world
>>> corpus = build_corpus(world, CorpusConfig("facts_first"))
>>> sorted(world.datasets())                              # OCRDatasets for verify_ocr & co.
['country', 'first_hop', 'second_hop', 'zong']

Modules, in dependency order: :mod:`.relations` (relations, templates, fact triples),
:mod:`.entities` (world config, cities, people), :mod:`.ocr_datasets` and :mod:`.world` (a world,
its facts and OCR datasets), :mod:`.generator`
(drawing a world), :mod:`.curricula` (ordered corpora), :mod:`.tokenizer` (word-level tokenizer),
:mod:`.pretrain_config`, :mod:`.pretrain_eval`, :mod:`.checkpoints` and :mod:`.pretrain`
(pretraining), :mod:`.world_models` (named world models, the default one), :mod:`.finetunes`,
:mod:`.scoring`, :mod:`.curriculum_result` and :mod:`.curriculum` (the curriculum experiment),
:mod:`.ablation` (the ablation check), :mod:`.experiment` (the experiments' former single module)
and :mod:`.cli` (``python -m extractive_lens.worlds``).
"""

from extractive_lens.worlds.curricula import CURRICULA, Corpus, CorpusConfig, Sentence, build_corpus
from extractive_lens.worlds.entities import City, Person, WorldCity, WorldConfig
from extractive_lens.worlds.generator import make_world
from extractive_lens.worlds.pretrain import PretrainResult, pretrain
from extractive_lens.worlds.pretrain_config import ModelConfig, TrainConfig
from extractive_lens.worlds.relations import RELATIONS, Fact, Relation
from extractive_lens.worlds.tokenizer import build_tokenizer, world_vocabulary
from extractive_lens.worlds.world import World
from extractive_lens.worlds.world_models import (
    WORLD_MODELS,
    WorldModelSpec,
    build_world_model,
    load_world_model,
    world_of,
)

__all__ = [
    "CURRICULA",
    "RELATIONS",
    "WORLD_MODELS",
    "City",
    "Corpus",
    "CorpusConfig",
    "Fact",
    "ModelConfig",
    "Person",
    "PretrainResult",
    "Relation",
    "Sentence",
    "TrainConfig",
    "World",
    "WorldCity",
    "WorldConfig",
    "WorldModelSpec",
    "build_corpus",
    "build_tokenizer",
    "build_world_model",
    "load_world_model",
    "make_world",
    "pretrain",
    "world_of",
    "world_vocabulary",
]
