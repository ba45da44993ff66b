"""Drawing seeded synthetic worlds: people, cities, countries, languages, landmarks, mayors, words.

A :class:`~extractive_lens.worlds.world.World` is drawn from a
:class:`~extractive_lens.worlds.entities.WorldConfig` (same config, same world, bit for bit). Every
name is one made-up word, so under the world's word-level tokenizer (:mod:`.tokenizer`) every
entity and every answer is a single token.

>>> world = make_world(WorldConfig(seed=0))
>>> len(world.cities), len(world.people)
(40, 70)
>>> ds = world.first_hop()
>>> ds.facts[0].prompt.endswith("lives in"), len(ds.implication_options)
(True, 20)

The relations and their templates are in :mod:`.relations`, the config and entities in
:mod:`.entities`, the world and its entity groups in :mod:`.world`, its OCR datasets in
:mod:`.ocr_datasets`; their names are importable from here too.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from extractive_lens.worlds.entities import City, Person, WorldCity, WorldConfig
from extractive_lens.worlds.relations import (
    BACKGROUND,
    FACT,
    FACT_ONLY,
    GROUPS,
    HELDOUT,
    IMPLICATION,
    KNOWN,
    MENTION,
    RELATIONS,
    ROLES,
    Fact,
    Relation,
)
from extractive_lens.worlds.world import World

ANIMAL_POOL = (
    "otter",
    "heron",
    "badger",
    "lynx",
    "falcon",
    "beaver",
    "walrus",
    "ibis",
    "jackal",
    "marten",
    "newt",
    "osprey",
    "panda",
    "quail",
    "raven",
    "sloth",
    "tapir",
    "urchin",
    "viper",
    "wombat",
    "yak",
    "zebra",
    "bison",
    "camel",
    "dingo",
    "egret",
    "ferret",
    "gecko",
    "hyena",
    "koala",
)
"""The animals a world's made-up ``wug`` relation draws from (``WorldConfig.n_animals`` of them);
not the built-in datasets' :data:`extractive_lens.data.ANIMALS`."""
ANIMALS = ANIMAL_POOL
"""The name :data:`ANIMAL_POOL` had before issue 14; kept importable."""

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr",
           "tr", "st", "th", "sh", "gl")  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "m")


def _pseudowords(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    """``n`` new capitalised made-up words, none in ``taken`` (which is updated)."""
    out: list[str] = []
    while len(out) < n:
        syllables = rng.choice((2, 2, 3))
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        word = (word + rng.choice(_CODAS)).capitalize()
        if word.lower() not in taken and 4 <= len(word) <= 10:
            taken.add(word.lower())
            out.append(word)
    return out


class _Names(NamedTuple):
    """The made-up words of a world, drawn in this order."""

    countries: list[str]
    languages: list[str]
    cities: list[str]
    landmarks: list[str]
    mayors: list[str]
    people: list[str]


def make_world(config: WorldConfig | None = None) -> World:
    """Draw a world from ``config`` (default ``WorldConfig()``), deterministically."""
    cfg = config or WorldConfig()
    _check_config(cfg)
    rng = random.Random(f"extractive_lens.worlds/{cfg.seed}")
    names = _draw_names(rng, cfg)
    animals = list(rng.sample(ANIMAL_POOL, cfg.n_animals))
    heldout_cities = _heldout_cities(rng, cfg)
    animal_of = _wug_animals(rng, animals, heldout_cities, cfg.n_cities)
    mayor_group = _mayor_groups(rng, cfg)
    # City k belongs to country k // cities_per_country.
    country_of = [k // cfg.cities_per_country for k in range(cfg.n_cities)]
    cities = tuple(
        WorldCity(
            name=names.cities[k],
            country=names.countries[country_of[k]],
            language=names.languages[country_of[k]],
            landmark=names.landmarks[k],
            animal=animal_of[k],
            mayor=names.mayors[k],
            mayor_group=mayor_group[k],
        )
        for k in range(cfg.n_cities)
    )
    return World(
        config=cfg,
        countries=tuple(names.countries),
        languages=tuple(names.languages),
        cities=cities,
        people=_draw_people(rng, cfg, names, heldout_cities),
        mayors=tuple(names.mayors),
        animals=tuple(animals),
    )


def _check_config(cfg: WorldConfig) -> None:
    n_mayor_groups = cfg.n_known_mayor_cities + cfg.n_fact_only_mayor_cities
    if not 2 <= cfg.n_heldout_people <= cfg.n_countries:
        raise ValueError("n_heldout_people must be between 2 and n_countries")
    if cfg.n_animals < cfg.n_heldout_people or cfg.n_animals > len(ANIMAL_POOL):
        raise ValueError(f"n_animals must be between n_heldout_people and {len(ANIMAL_POOL)}")
    if cfg.n_cities - n_mayor_groups < 2 or min(cfg.n_known_people, cfg.n_known_mayor_cities) < 1:
        raise ValueError("need >= 2 held-out mayor cities and >= 1 known person and city")
    if cfg.cities_per_country < 1:
        raise ValueError("cities_per_country must be >= 1")


def _draw_names(rng: random.Random, cfg: WorldConfig) -> _Names:
    """Countries (each with its language), cities, landmarks, mayors and people: new words each,
    none a template word, relation name or animal."""
    n_people = cfg.n_known_people + cfg.n_fact_only_people + cfg.n_heldout_people
    taken = {w.lower() for r in RELATIONS.values() for t in r.templates for w in t.split()}
    taken |= {r.name for r in RELATIONS.values()} | set(ANIMAL_POOL)
    countries = _pseudowords(rng, cfg.n_countries, taken)
    languages = [c + "n" if c[-1] in "aeiou" else c + "ish" for c in countries]
    taken |= {w.lower() for w in languages}
    cities = _pseudowords(rng, cfg.n_cities, taken)
    landmarks = [
        w + rng.choice(("gate", "tower", "spire", "hall", "bridge"))
        for w in _pseudowords(rng, cfg.n_cities, taken)
    ]
    mayors = _pseudowords(rng, cfg.n_cities, taken)
    people = _pseudowords(rng, n_people, taken)
    return _Names(countries, languages, cities, landmarks, mayors, people)


def _heldout_cities(rng: random.Random, cfg: WorldConfig) -> list[int]:
    """The held-out people's cities: one city in each of ``n_heldout_people`` distinct countries."""
    heldout_countries = rng.sample(range(cfg.n_countries), cfg.n_heldout_people)
    return [
        c * cfg.cities_per_country + rng.randrange(cfg.cities_per_country)
        for c in heldout_countries
    ]


def _wug_animals(
    rng: random.Random, animals: list[str], heldout_cities: list[int], n_cities: int
) -> list[str]:
    """Each city's wug: the held-out people's cities get pairwise distinct animals, the others any
    animal."""
    animal_of = [""] * n_cities
    for k, a in zip(heldout_cities, rng.sample(animals, len(heldout_cities)), strict=True):
        animal_of[k] = a
    for k in range(n_cities):
        if not animal_of[k]:
            animal_of[k] = rng.choice(animals)
    return animal_of


def _mayor_groups(rng: random.Random, cfg: WorldConfig) -> list[str]:
    """Each city's mayor group: over a random order of the cities, first ``known``, then
    ``fact_only``, then ``heldout``."""
    n_mayor_groups = cfg.n_known_mayor_cities + cfg.n_fact_only_mayor_cities
    order = rng.sample(range(cfg.n_cities), cfg.n_cities)
    mayor_group = [""] * cfg.n_cities
    for i, k in enumerate(order):
        if i < cfg.n_known_mayor_cities:
            mayor_group[k] = KNOWN
        elif i < n_mayor_groups:
            mayor_group[k] = FACT_ONLY
        else:
            mayor_group[k] = HELDOUT
    return mayor_group


def _draw_people(
    rng: random.Random, cfg: WorldConfig, names: _Names, heldout_cities: list[int]
) -> tuple[Person, ...]:
    """Known and fact-only people in random cities, then the held-out people in theirs."""
    people = []
    groups = [KNOWN] * cfg.n_known_people + [FACT_ONLY] * cfg.n_fact_only_people
    for name, group in zip(names.people, groups, strict=False):
        people.append(Person(name, names.cities[rng.randrange(cfg.n_cities)], group))
    for name, k in zip(names.people[len(groups) :], heldout_cities, strict=True):
        people.append(Person(name, names.cities[k], HELDOUT))
    return tuple(people)


__all__ = [
    "ANIMALS",
    "ANIMAL_POOL",
    "BACKGROUND",
    "FACT",
    "FACT_ONLY",
    "GROUPS",
    "HELDOUT",
    "IMPLICATION",
    "KNOWN",
    "MENTION",
    "RELATIONS",
    "ROLES",
    "City",
    "Fact",
    "Person",
    "Relation",
    "World",
    "WorldCity",
    "WorldConfig",
    "make_world",
]
