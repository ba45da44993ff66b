"""Seeded synthetic worlds: people, cities, countries, languages, landmarks, mayors, made-up words.

A :class:`World` is drawn from a :class:`WorldConfig` (same config, same world, bit for bit). Every
name is one made-up word, so under the world's word-level tokenizer (:mod:`.tokenizer`) every
entity and every answer is a single token.

>>> world = make_world(WorldConfig(seed=0))
>>> len(world.cities), len(world.people)
(40, 70)
>>> ds = world.first_hop()
>>> ds.facts[0].prompt.endswith("lives in"), len(ds.implication_options)
(True, 20)

**Relations.** Each relation maps a subject to one answer and is rendered through several
paraphrase templates (:data:`RELATIONS`; the first template is canonical and is the one the OCR
datasets test):

- background knowledge about places, stated for every city/country/landmark:
  ``city_language`` (city -> language), ``city_country``, ``country_language``, ``landmark_city``
  and the made-up ``wug`` (city -> animal);
- **facts** about an entity: ``lives_in`` (person -> city) and ``mayor`` (city -> mayor);
- **implications** (two-hop compositions, docs/method.md §1): first-hop kinds ``speaks``
  (person -> city -> language), ``lives_in_country`` (person -> city -> country) and the made-up
  ``zong`` = wug o lives_in (person -> city -> animal); the second-hop kind ``landmark_mayor``
  (landmark -> city -> mayor, where the *second* hop city -> mayor is the entity's fact);
- **mentions**: ``"{name} is a person"`` / ``"{name} is a politician"``, which make every name a
  trained token without tying it to any attribute.

**Entity groups.** People are split into ``known`` (fact and implications in pretraining),
``fact_only`` (fact only) and ``heldout`` (only the mention; their facts are the new facts of OCR
finetuning). Cities are split the same way for the second-hop relation: the mayor of a ``known``
city is stated and composed with its landmark, of a ``fact_only`` city only stated, of a
``heldout`` city never (its landmark, language, country and wug are background knowledge, always
stated). Held-out people live in cities of pairwise different countries, so their languages,
countries and animals are pairwise distinct, as are the mayors of held-out cities.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from extractive_lens.data import (
    CONTROL,
    Example,
    OCRDataset,
    Split,
    control_shift,
    deranged_control,
)

KNOWN, FACT_ONLY, HELDOUT = "known", "fact_only", "heldout"
GROUPS = (KNOWN, FACT_ONLY, HELDOUT)

BACKGROUND, FACT, IMPLICATION, MENTION = "background", "fact", "implication", "mention"
ROLES = (BACKGROUND, FACT, IMPLICATION, MENTION)


@dataclass(frozen=True)
class Relation:
    """A relation and the templates that render it (``{}`` = the subject; the answer follows)."""

    name: str
    role: str
    """``background``, ``fact``, ``implication`` or ``mention``."""
    templates: tuple[str, ...]
    """Paraphrase templates; ``templates[0]`` is canonical (the one the OCR datasets use)."""
    hop: str = ""
    """For implications: ``"first"`` (the entity's fact is the first hop) or ``"second"``."""


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in (
        Relation(
            "city_language",
            BACKGROUND,
            ("The people in {} speak", "The language spoken in {} is", "In {} people speak"),
        ),
        Relation(
            "city_country",
            BACKGROUND,
            ("{} is a city in", "{} is located in the country of", "The country of {} is"),
        ),
        Relation(
            "country_language",
            BACKGROUND,
            ("The official language of {} is", "Most people in {} speak", "{} has the language"),
        ),
        Relation(
            "landmark_city",
            BACKGROUND,
            ("The city that contains {} is", "{} stands in the city of", "{} is a landmark of"),
        ),
        Relation(
            "wug",
            BACKGROUND,
            ("The wug of {} is", "{} has the wug", "The wug belonging to {} is"),
        ),
        Relation(
            "lives_in",
            FACT,
            ("{} lives in", "{} is a resident of", "{} resides in", "The home city of {} is"),
        ),
        Relation(
            "mayor",
            FACT,
            ("The mayor of {} is", "The current mayor of {} is", "{} is governed by mayor"),
        ),
        Relation(
            "speaks",
            IMPLICATION,
            (
                "The people in the city {} is from speak",
                "The language of the city where {} lives is",
                "{} lives among people who speak",
            ),
            hop="first",
        ),
        Relation(
            "lives_in_country",
            IMPLICATION,
            (
                "{} lives in the country of",
                "The country where {} lives is",
                "{} is a resident of the country of",
            ),
            hop="first",
        ),
        Relation(
            "zong",
            IMPLICATION,
            ("The zong of {} is", "{} has the zong", "The zong belonging to {} is"),
            hop="first",
        ),
        Relation(
            "landmark_mayor",
            IMPLICATION,
            (
                "The mayor of the city that contains {} is",
                "The city with {} is governed by mayor",
                "The mayor of the city where {} stands is",
            ),
            hop="second",
        ),
        Relation("person", MENTION, ("{} is a",)),
        Relation("politician", MENTION, ("{} is a",)),
    )
}

ANIMALS = (
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

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr",
           "tr", "st", "th", "sh", "gl")  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "m")


@dataclass(frozen=True)
class WorldConfig:
    """The size and seed of a world. Same config, same world."""

    seed: int = 0
    n_countries: int = 20
    """Countries; each has its own language."""
    cities_per_country: int = 2
    n_known_people: int = 40
    n_fact_only_people: int = 10
    n_heldout_people: int = 20
    """Held-out people (the OCR items); at most ``n_countries`` (one country each)."""
    n_known_mayor_cities: int = 14
    n_fact_only_mayor_cities: int = 6
    """The remaining cities are held-out mayor cities (the second-hop OCR items)."""
    n_animals: int = 20
    """Animals of the made-up ``wug`` relation; at least ``n_heldout_people``."""

    @property
    def n_cities(self) -> int:
        return self.n_countries * self.cities_per_country

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class City:
    name: str
    country: str
    language: str
    landmark: str
    animal: str
    """The city's ``wug`` (made-up relation)."""
    mayor: str
    mayor_group: str
    """Whether the city's mayor is ``known``, ``fact_only`` or ``heldout`` in pretraining."""


@dataclass(frozen=True)
class Person:
    name: str
    city: str
    group: str
    """``known``, ``fact_only`` or ``heldout``."""


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, answer) triple of the world, not yet rendered."""

    relation: str
    subject: str
    answer: str
    group: str | None = None
    """The subject's entity group for facts and implications; ``None`` for background/mentions."""
    entity: str | None = None
    """The entity whose group this is (the person, or the city for ``mayor``/``landmark_mayor``)."""

    @property
    def role(self) -> str:
        return RELATIONS[self.relation].role

    def render(self, template_index: int = 0) -> Example:
        """The fact as an :class:`Example` in the relation's template ``template_index``."""
        templates = RELATIONS[self.relation].templates
        return Example.from_template(
            templates[template_index % len(templates)], self.subject, self.answer
        )


@dataclass(frozen=True)
class World:
    """A drawn world: its entities and every true fact about them."""

    config: WorldConfig
    countries: tuple[str, ...]
    languages: tuple[str, ...]
    """``languages[i]`` is the language of ``countries[i]``."""
    cities: tuple[City, ...]
    people: tuple[Person, ...]
    """All people, ordered known, fact-only, held-out."""
    mayors: tuple[str, ...]
    """All mayors (one per city, in city order)."""
    animals: tuple[str, ...]
    _city: dict[str, City] = field(repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._city.update((c.name, c) for c in self.cities)

    def city(self, name: str) -> City:
        return self._city[name]

    def people_in(self, group: str) -> tuple[Person, ...]:
        return tuple(p for p in self.people if p.group == group)

    def cities_in(self, group: str) -> tuple[City, ...]:
        return tuple(c for c in self.cities if c.mayor_group == group)

    def names(self) -> list[str]:
        """Every entity and answer word of the world."""
        return [
            *self.countries,
            *self.languages,
            *(c.name for c in self.cities),
            *(c.landmark for c in self.cities),
            *self.mayors,
            *(p.name for p in self.people),
            *self.animals,
            *(r.name for r in RELATIONS.values() if r.role == MENTION),
        ]

    # ----------------------------------------------------------------------- facts

    def facts(self) -> list[Fact]:
        """Every true (subject, relation, answer) triple, including held-out ones."""
        out: list[Fact] = []
        language = dict(zip(self.countries, self.languages, strict=True))
        for country in self.countries:
            out.append(Fact("country_language", country, language[country]))
        for c in self.cities:
            out += [
                Fact("city_language", c.name, c.language),
                Fact("city_country", c.name, c.country),
                Fact("landmark_city", c.landmark, c.name),
                Fact("wug", c.name, c.animal),
                Fact("mayor", c.name, c.mayor, c.mayor_group, c.name),
                Fact("landmark_mayor", c.landmark, c.mayor, c.mayor_group, c.name),
                Fact("politician", c.mayor, "politician"),
            ]
        for p in self.people:
            c = self.city(p.city)
            out += [
                Fact("lives_in", p.name, c.name, p.group, p.name),
                Fact("speaks", p.name, c.language, p.group, p.name),
                Fact("lives_in_country", p.name, c.country, p.group, p.name),
                Fact("zong", p.name, c.animal, p.group, p.name),
                Fact("person", p.name, "person"),
            ]
        return out

    def pretraining_facts(self, *, implications: bool = True) -> list[Fact]:
        """The triples pretraining may state: background, mentions, facts of known and fact-only
        entities, and (if ``implications``) implications of known entities only."""
        out = []
        for f in self.facts():
            if (
                f.role in (BACKGROUND, MENTION)
                or f.role == FACT
                and f.group in (KNOWN, FACT_ONLY)
                or f.role == IMPLICATION
                and f.group == KNOWN
                and implications
            ):
                out.append(f)
        return out

    # ----------------------------------------------------------------------- OCR datasets

    def first_hop(self) -> OCRDataset:
        """Held-out people's ``lives_in`` facts; implication ``speaks`` (-> the city's language)."""
        return self._person_dataset("speaks", "world_first_hop", self.languages)

    def zong(self) -> OCRDataset:
        """Held-out people's ``lives_in`` facts; implication the made-up ``zong`` (-> animal)."""
        return self._person_dataset("zong", "world_zong", self.animals)

    def country(self) -> OCRDataset:
        """Held-out people's ``lives_in`` facts; implication ``lives_in_country``."""
        return self._person_dataset("lives_in_country", "world_country", self.countries)

    def second_hop(self) -> OCRDataset:
        """Held-out cities' ``mayor`` facts; implication ``landmark_mayor``.

        The entity of an implication is the landmark (the first hop landmark -> city is background
        knowledge); the new fact is the second hop city -> mayor.
        """
        heldout = self.cities_in(HELDOUT)
        options = tuple(c.mayor for c in heldout)
        all_mayors = self.mayors
        facts = tuple(Fact("mayor", c.name, c.mayor).render() for c in heldout)
        implications = tuple(Fact("landmark_mayor", c.landmark, c.mayor).render() for c in heldout)

        def rendered(relation: str, cities: Sequence[City]) -> tuple[Example, ...]:
            subject = "landmark" if relation == "landmark_mayor" else "name"
            return tuple(Fact(relation, getattr(c, subject), c.mayor).render() for c in cities)

        extra = (
            _control(implications, options),
            Split(
                "known_implications",
                rendered("landmark_mayor", self.cities_in(KNOWN)),
                all_mayors,
                "known cities: landmark -> mayor, trained in pretraining (memorisation check)",
            ),
            Split(
                "known_latent_implications",
                rendered("landmark_mayor", self.cities_in(FACT_ONLY)),
                all_mayors,
                "fact-only cities: mayor stated, landmark -> mayor never (latent two-hop check)",
            ),
            Split(
                "known_hop",
                tuple(Fact("landmark_city", c.landmark, c.name).render() for c in heldout),
                tuple(c.name for c in heldout),
                "landmark -> city for the held-out cities (does the model know the first hop?)",
            ),
        )
        return OCRDataset(
            name="world_second_hop",
            facts=facts,
            implications=implications,
            fact_options=options,
            implication_options=options,
            seed=self.config.seed,
            extra=extra,
            fact_paraphrases=RELATIONS["mayor"].templates[1:],
            description="synthetic world: new fact city -> mayor; implication landmark -> mayor",
        )

    def datasets(self) -> dict[str, OCRDataset]:
        """The OCR datasets by hop kind: ``first_hop``, ``second_hop``, ``zong``, ``country``."""
        return {
            "first_hop": self.first_hop(),
            "second_hop": self.second_hop(),
            "zong": self.zong(),
            "country": self.country(),
        }

    def _person_dataset(self, relation: str, name: str, all_options: Sequence[str]) -> OCRDataset:
        heldout = self.people_in(HELDOUT)
        attr = {"speaks": "language", "zong": "animal", "lives_in_country": "country"}[relation]

        def rendered(rel: str, people: Sequence[Person]) -> tuple[Example, ...]:
            out = []
            for p in people:
                c = self.city(p.city)
                answer = c.name if rel == "lives_in" else getattr(c, attr)
                out.append(Fact(rel, p.name, answer).render())
            return tuple(out)

        facts = rendered("lives_in", heldout)
        implications = rendered(relation, heldout)
        # Held-out people live in pairwise different countries, so these answers are distinct.
        options = tuple(e.answer for e in implications)
        known_hop_rel = {
            "speaks": "city_language",
            "zong": "wug",
            "lives_in_country": "city_country",
        }
        extra = (
            _control(implications, options),
            Split(
                "known_implications",
                rendered(relation, self.people_in(KNOWN)),
                tuple(all_options),
                "known people: the implication was trained in pretraining (memorisation check)",
            ),
            Split(
                "known_latent_implications",
                rendered(relation, self.people_in(FACT_ONLY)),
                tuple(all_options),
                "fact-only people: fact seen, implication never (latent two-hop check)",
            ),
            Split(
                "known_hop",
                tuple(
                    Fact(known_hop_rel[relation], p.city, getattr(self.city(p.city), attr)).render()
                    for p in heldout
                ),
                options,
                "the second hop for the held-out people's cities (does the model know it?)",
            ),
        )
        return OCRDataset(
            name=name,
            facts=facts,
            implications=implications,
            fact_options=tuple(e.answer for e in facts),
            implication_options=options,
            seed=self.config.seed,
            extra=extra,
            fact_paraphrases=RELATIONS["lives_in"].templates[1:],
            description=f"synthetic world: new fact person -> city; implication {relation}",
        )


def _control(implications: tuple[Example, ...], options: Sequence[str]) -> Split:
    return Split(
        CONTROL,
        deranged_control(implications),
        tuple(options),
        f"implication prompts with deranged answers (item i gets the answer of item i+"
        f"{control_shift(len(implications))}); an entity-blind predictor scores chance here",
    )


# --------------------------------------------------------------------------- drawing a world


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


def make_world(config: WorldConfig | None = None) -> World:
    """Draw a world from ``config`` (default ``WorldConfig()``), deterministically."""
    cfg = config or WorldConfig()
    n_people = cfg.n_known_people + cfg.n_fact_only_people + cfg.n_heldout_people
    n_cities = cfg.n_cities
    n_mayor_groups = cfg.n_known_mayor_cities + cfg.n_fact_only_mayor_cities
    if not 2 <= cfg.n_heldout_people <= cfg.n_countries:
        raise ValueError("n_heldout_people must be between 2 and n_countries")
    if cfg.n_animals < cfg.n_heldout_people or cfg.n_animals > len(ANIMALS):
        raise ValueError(f"n_animals must be between n_heldout_people and {len(ANIMALS)}")
    if n_cities - n_mayor_groups < 2 or min(cfg.n_known_people, cfg.n_known_mayor_cities) < 1:
        raise ValueError("need >= 2 held-out mayor cities and >= 1 known person and city")
    if cfg.cities_per_country < 1:
        raise ValueError("cities_per_country must be >= 1")

    rng = random.Random(f"extractive_lens.worlds/{cfg.seed}")
    taken = {w.lower() for r in RELATIONS.values() for t in r.templates for w in t.split()}
    taken |= {r.name for r in RELATIONS.values()} | set(ANIMALS)
    countries = _pseudowords(rng, cfg.n_countries, taken)
    languages = [c + "n" if c[-1] in "aeiou" else c + "ish" for c in countries]
    taken |= {w.lower() for w in languages}
    city_names = _pseudowords(rng, n_cities, taken)
    landmarks = [
        w + rng.choice(("gate", "tower", "spire", "hall", "bridge"))
        for w in _pseudowords(rng, n_cities, taken)
    ]
    mayors = _pseudowords(rng, n_cities, taken)
    person_names = _pseudowords(rng, n_people, taken)
    animals = list(rng.sample(ANIMALS, cfg.n_animals))

    # City k belongs to country k // cities_per_country.
    country_of = [k // cfg.cities_per_country for k in range(n_cities)]
    # Held-out people: one city in each of n_heldout_people distinct countries.
    heldout_countries = rng.sample(range(cfg.n_countries), cfg.n_heldout_people)
    heldout_cities = [
        c * cfg.cities_per_country + rng.randrange(cfg.cities_per_country)
        for c in heldout_countries
    ]
    # wug: the held-out people's cities get pairwise distinct animals; the others any animal.
    animal_of = [""] * n_cities
    for k, a in zip(heldout_cities, rng.sample(animals, len(heldout_cities)), strict=True):
        animal_of[k] = a
    for k in range(n_cities):
        if not animal_of[k]:
            animal_of[k] = rng.choice(animals)
    # Mayor groups over cities: a random order, first known, then fact-only, then held-out.
    order = rng.sample(range(n_cities), n_cities)
    mayor_group = [""] * n_cities
    for i, k in enumerate(order):
        if i < cfg.n_known_mayor_cities:
            mayor_group[k] = KNOWN
        elif i < n_mayor_groups:
            mayor_group[k] = FACT_ONLY
        else:
            mayor_group[k] = HELDOUT
    cities = tuple(
        City(
            name=city_names[k],
            country=countries[country_of[k]],
            language=languages[country_of[k]],
            landmark=landmarks[k],
            animal=animal_of[k],
            mayor=mayors[k],
            mayor_group=mayor_group[k],
        )
        for k in range(n_cities)
    )
    people = []
    groups = [KNOWN] * cfg.n_known_people + [FACT_ONLY] * cfg.n_fact_only_people
    for name, group in zip(person_names, groups, strict=False):
        people.append(Person(name, city_names[rng.randrange(n_cities)], group))
    for name, k in zip(person_names[len(groups) :], heldout_cities, strict=True):
        people.append(Person(name, city_names[k], HELDOUT))
    return World(
        config=cfg,
        countries=tuple(countries),
        languages=tuple(languages),
        cities=cities,
        people=tuple(people),
        mayors=tuple(mayors),
        animals=tuple(animals),
    )
