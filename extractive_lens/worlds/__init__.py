"""Synthetic worlds: pretrain small models from scratch and study OCR with full control of the data.

>>> from extractive_lens.worlds import make_world, build_corpus, CorpusConfig
>>> world = make_world()                                  # seeded: same config, same world
>>> corpus = build_corpus(world, CorpusConfig("facts_first"))
>>> sorted(world.datasets())                              # OCRDatasets for verify_ocr & co.
['country', 'first_hop', 'second_hop', 'zong']

Modules, in dependency order: :mod:`.relations` (relations, templates, fact triples),
:mod:`.entities` (world config, cities, people), :mod:`.ocr_datasets` and :mod:`.world` (a world,
its facts and OCR datasets), :mod:`.generator` (drawing a world), :mod:`.curricula` (ordered
corpora), :mod:`.tokenizer` (word-level tokenizer), :mod:`.pretrain_config`, :mod:`.pretrain_eval`,
:mod:`.checkpoints` and :mod:`.pretrain_loop` (pretraining), :mod:`.world_models` (named world
models, the default one), :mod:`.finetunes`, :mod:`.scoring`, :mod:`.curriculum_config`,
:mod:`.curriculum_result` and :mod:`.curriculum` (the curriculum experiment), :mod:`.ablation` (the
ablation check); the command line (``python -m extractive_lens.worlds``) is
:mod:`extractive_lens.cli.worlds`. :mod:`.generator`, :mod:`.pretrain` and :mod:`.experiment` also
re-export the names they held before issue 14.
"""

from extractive_lens.worlds.curricula import CURRICULA, Corpus, CorpusConfig, Sentence, build_corpus
from extractive_lens.worlds.generator import (
    RELATIONS,
    City,
    Fact,
    Person,
    Relation,
    World,
    WorldCity,
    WorldConfig,
    make_world,
)
from extractive_lens.worlds.pretrain import (
    WORLD_MODELS,
    ModelConfig,
    PretrainResult,
    TrainConfig,
    WorldModelSpec,
    build_world_model,
    load_world_model,
    pretrain,
    world_of,
)
from extractive_lens.worlds.tokenizer import build_tokenizer, world_vocabulary

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
    "register_models",
    "world_of",
    "world_vocabulary",
]


def register_models() -> None:
    """Make every name of :data:`WORLD_MODELS` loadable with ``load_model`` (the package's entry
    point in the group ``extractive_lens.models``, run on the first ``load_model("world-...")``)."""
    from extractive_lens.models import register_named_model

    for name in WORLD_MODELS:
        register_named_model(name, load_world_model)
