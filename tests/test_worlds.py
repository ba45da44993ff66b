"""Synthetic worlds: generator, curricula and tokenizer (fast, no model)."""

from __future__ import annotations

import pytest

from extractive_lens.data import CONTROL, validate
from extractive_lens.worlds import (
    CURRICULA,
    RELATIONS,
    CorpusConfig,
    WorldConfig,
    build_corpus,
    build_tokenizer,
    make_world,
)
from extractive_lens.worlds.generator import FACT, FACT_ONLY, HELDOUT, IMPLICATION, KNOWN

SMALL = WorldConfig(
    seed=3,
    n_countries=6,
    n_known_people=8,
    n_fact_only_people=3,
    n_heldout_people=5,
    n_known_mayor_cities=4,
    n_fact_only_mayor_cities=2,
    n_animals=6,
)


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def tokenizer(world):
    return build_tokenizer(world)


def test_world_is_deterministic_per_seed():
    assert make_world(WorldConfig(seed=5)) == make_world(WorldConfig(seed=5))
    a, b = make_world(WorldConfig(seed=5)), make_world(WorldConfig(seed=6))
    assert a.people != b.people and a.cities != b.cities
    corpus = [build_corpus(make_world(SMALL), CorpusConfig(repeats=3)).texts() for _ in range(2)]
    assert corpus[0] == corpus[1]
    other = build_corpus(make_world(SMALL), CorpusConfig(repeats=3, seed=1)).texts()
    assert other != corpus[0] and sorted(other) == sorted(corpus[0])


def test_world_structure(world):
    cfg = world.config
    names = world.names()
    assert len(names) == len(set(names)), "every name is a distinct word"
    assert len(world.cities) == cfg.n_countries * cfg.cities_per_country
    heldout = world.people_in(HELDOUT)
    assert len(heldout) == cfg.n_heldout_people
    for attr in ("country", "language", "animal"):
        values = [getattr(world.city(p.city), attr) for p in heldout]
        assert len(set(values)) == len(values), f"held-out people's {attr}s must be distinct"
    assert len(world.cities_in(HELDOUT)) == cfg.n_cities - 20
    for c in world.cities:
        assert world.languages[world.countries.index(c.country)] == c.language


def test_datasets_validate_and_align(world, tokenizer):
    for name, ds in world.datasets().items():
        validate(ds, tokenizer)
        assert len(ds.facts) == len(ds.implications) == 20, name
        assert len(ds.implication_options) == 20
        control = ds.split(CONTROL).examples
        assert all(c.answer != i.answer for c, i in zip(control, ds.implications, strict=True))
    first = world.first_hop()
    for fact, impl in zip(first.facts, first.implications, strict=True):
        assert fact.entity == impl.entity
        assert world.city(fact.answer).language == impl.answer
    second = world.second_hop()
    for fact, impl in zip(second.facts, second.implications, strict=True):
        assert world.city(fact.entity).landmark == impl.entity and fact.answer == impl.answer


def test_heldout_entities_never_cooccur_with_their_attributes(world):
    corpus = build_corpus(world, CorpusConfig(repeats=2))
    counts = corpus.counts()
    for p in world.people:
        c = world.city(p.city)
        pairs = [(p.name, c.name), (p.name, c.language), (p.name, c.country), (p.name, c.animal)]
        seen = [counts[pair] for pair in pairs]
        if p.group == HELDOUT:
            assert seen == [0, 0, 0, 0]
        elif p.group == FACT_ONLY:
            assert seen == [2, 0, 0, 0]
        else:
            assert seen == [2, 2, 2, 2]
        assert counts[(p.name, "person")] == corpus.config.mention_repeats
    for c in world.cities:
        expected = {KNOWN: (2, 2), FACT_ONLY: (2, 0), HELDOUT: (0, 0)}[c.mayor_group]
        assert (counts[(c.name, c.mayor)], counts[(c.landmark, c.mayor)]) == expected
        assert counts[(c.landmark, c.name)] == 2 and counts[(c.name, c.language)] == 2


@pytest.mark.parametrize("curriculum", CURRICULA)
def test_curricula_order(curriculum):
    world = make_world(SMALL)
    corpus = build_corpus(world, CorpusConfig(curriculum, repeats=6))
    assert [s.time for s in corpus.sentences] == sorted(s.time for s in corpus.sentences)
    known = [p.name for p in world.people_in(KNOWN)] + [c.name for c in world.cities_in(KNOWN)]
    interleaved = 0
    for entity in known:
        facts, impls = corpus.positions(entity, FACT), corpus.positions(entity, IMPLICATION)
        assert len(facts) == 6
        if curriculum == "facts_only":
            assert impls == []
            continue
        assert len(impls) == 6 * (3 if entity in known[: SMALL.n_known_people] else 1)
        if curriculum == "facts_first":
            assert max(facts) < min(impls)
        elif curriculum == "implications_first":
            assert max(impls) < min(facts)
        else:
            interleaved += min(impls) < max(facts) and min(facts) < max(impls)
    if curriculum == "interleaved":
        assert interleaved >= 0.9 * len(known)
    roles = {s.role for s in corpus.sentences}
    assert (IMPLICATION in roles) == (curriculum != "facts_only")
    # Facts of fact-only entities and background knowledge are spread over the whole corpus.
    n = len(corpus)
    for group_role in [("fact_only", FACT), (None, "background")]:
        where = [i for i, s in enumerate(corpus.sentences) if (s.group, s.role) == group_role]
        assert min(where) < n / 4 and max(where) > 3 * n / 4
    # No implication about a fact-only or held-out entity, no fact about a held-out one.
    assert not [s for s in corpus.sentences if s.role == IMPLICATION and s.group != KNOWN]
    assert not [s for s in corpus.sentences if s.group == HELDOUT]


def test_paraphrase_augmentation():
    world = make_world(SMALL)
    on = build_corpus(world, CorpusConfig(repeats=6, paraphrases=True))
    off = build_corpus(world, CorpusConfig(repeats=6, paraphrases=False))
    assert len(on) == len(off)
    assert on.relation_counts() == off.relation_counts()
    used_on = {s.example.template for s in on.sentences if s.relation == "lives_in"}
    used_off = {s.example.template for s in off.sentences if s.relation == "lives_in"}
    assert used_on == set(RELATIONS["lives_in"].templates)
    assert used_off == {RELATIONS["lives_in"].templates[0]}


def test_tokenizer_round_trips_every_template(world, tokenizer):
    facts = world.facts()
    for relation in RELATIONS.values():
        fact = next(f for f in facts if f.relation == relation.name)
        for i in range(len(relation.templates)):
            ex = fact.render(i)
            ids = tokenizer(ex.text, add_special_tokens=False).input_ids
            assert tokenizer.unk_token_id not in ids
            assert tokenizer.decode(ids) == ex.text
            assert len(ids) == len(ex.text.split())
            with_bos = tokenizer(ex.prompt).input_ids
            assert with_bos[0] == tokenizer.bos_token_id
    for name in world.names():
        assert len(tokenizer(" " + name, add_special_tokens=False).input_ids) == 1
    assert build_tokenizer(world).get_vocab() == tokenizer.get_vocab()


def test_world_config_errors():
    with pytest.raises(ValueError):
        make_world(WorldConfig(n_heldout_people=30))
    with pytest.raises(ValueError):
        CorpusConfig("random")
