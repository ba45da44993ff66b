"""Pretraining corpora of a world, in a controlled order (the curriculum).

>>> from extractive_lens.worlds import make_world, build_corpus, CorpusConfig
>>> corpus = build_corpus(make_world(), CorpusConfig("facts_first", repeats=2))
>>> corpus.sentences[0].text.count(" ") > 1
True

A corpus is a list of one-sentence documents (``prompt + " " + answer``), each tagged with its
relation, role and entity group. Pretraining reads it once, in order, in consecutive batches. Each
triple of :meth:`World.pretraining_facts` occurs ``repeats`` times (mentions ``mention_repeats``
times); with ``paraphrases=True`` the occurrences cycle through the relation's templates, without
it they all use the canonical template (the one the OCR datasets test). Held-out entities occur
only in their mention (``"{name} is a person"``), never with an attribute.

**Curricula** decide where the facts and implications of *known* entities go; everything else
(background knowledge, mentions, facts of fact-only entities) is spread uniformly over the whole
corpus. Each sentence gets a position ``time`` in [0, 1) and the corpus is sorted by it:

- ``interleaved``: known facts and implications uniformly over [0, 1);
- ``facts_first``: known facts in [0, 0.5), their implications in [0.5, 1): for every known entity
  every fact precedes every implication;
- ``implications_first``: the reverse;
- ``facts_only``: known facts over [0, 1), no implications anywhere (the corpus is shorter by the
  implications).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass

from extractive_lens.data import Example
from extractive_lens.worlds.relations import FACT, IMPLICATION, KNOWN, MENTION, RELATIONS
from extractive_lens.worlds.world import World

CURRICULA = ("interleaved", "facts_first", "implications_first", "facts_only")

_WINDOWS = {
    # curriculum: (window of known facts, window of known implications or None)
    "interleaved": ((0.0, 1.0), (0.0, 1.0)),
    "facts_first": ((0.0, 0.5), (0.5, 1.0)),
    "implications_first": ((0.5, 1.0), (0.0, 0.5)),
    "facts_only": ((0.0, 1.0), None),
}


@dataclass(frozen=True)
class CorpusConfig:
    """What the corpus holds and in which order."""

    curriculum: str = "interleaved"
    """One of :data:`CURRICULA`."""
    paraphrases: bool = True
    """Cycle every triple through its relation's templates (else: canonical template only)."""
    repeats: int = 60
    """Occurrences of every background triple, fact and implication."""
    mention_repeats: int = 4
    """Occurrences of every name mention."""
    seed: int = 0
    """Seeds the placement (the world has its own seed)."""

    def __post_init__(self) -> None:
        if self.curriculum not in CURRICULA:
            raise ValueError(f"curriculum must be one of {CURRICULA}, got {self.curriculum!r}")
        if self.repeats < 1 or self.mention_repeats < 0:
            raise ValueError("repeats must be >= 1 and mention_repeats >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Sentence:
    """One document of the corpus."""

    example: Example
    relation: str
    role: str
    """``background``, ``fact``, ``implication`` or ``mention``."""
    group: str | None
    """Entity group (``known``, ``fact_only``) of facts and implications, else ``None``."""
    entity: str | None
    """The person (or city, for mayors) whose group this is; ``None`` for background/mentions."""
    time: float
    """Placement in [0, 1); the corpus is sorted by it."""

    @property
    def text(self) -> str:
        return self.example.text


@dataclass(frozen=True)
class Corpus:
    world: World
    config: CorpusConfig
    sentences: tuple[Sentence, ...]

    def __len__(self) -> int:
        return len(self.sentences)

    def texts(self) -> list[str]:
        return [s.text for s in self.sentences]

    def counts(self) -> Counter[tuple[str, str]]:
        """Exact number of sentences in which each (entity, attribute) pair co-occurs.

        The entity is the subject of the sentence (a person, city, country or landmark) and the
        attribute its answer; pairs that never co-occur are absent (count 0).
        """
        return Counter((s.example.entity, s.example.answer) for s in self.sentences)

    def relation_counts(self) -> Counter[tuple[str, str, str]]:
        """Exact counts of every (relation, subject, answer) triple in the corpus."""
        return Counter((s.relation, s.example.entity, s.example.answer) for s in self.sentences)

    def positions(self, entity: str, role: str) -> list[int]:
        """Indices of the sentences of ``role`` (``fact``/``implication``) about ``entity``."""
        return [i for i, s in enumerate(self.sentences) if s.entity == entity and s.role == role]


def build_corpus(world: World, config: CorpusConfig | None = None) -> Corpus:
    """The world's pretraining corpus under ``config`` (deterministic for world and config)."""
    cfg = config or CorpusConfig()
    rng = random.Random(f"extractive_lens.worlds.corpus/{world.config.seed}/{cfg.seed}")
    facts_window, impl_window = _WINDOWS[cfg.curriculum]
    out: list[Sentence] = []
    for fact in world.pretraining_facts(implications=impl_window is not None):
        window = (0.0, 1.0)
        if fact.group == KNOWN and fact.role == FACT:
            window = facts_window
        elif fact.role == IMPLICATION:
            window = impl_window
        n = cfg.mention_repeats if fact.role == MENTION else cfg.repeats
        n_templates = len(RELATIONS[fact.relation].templates)
        for k in range(n):
            example = fact.render(k % n_templates if cfg.paraphrases else 0)
            time = window[0] + (window[1] - window[0]) * rng.random()
            out.append(Sentence(example, fact.relation, fact.role, fact.group, fact.entity, time))
    out.sort(key=lambda s: s.time)
    return Corpus(world, cfg, tuple(out))
