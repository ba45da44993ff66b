"""A drawn synthetic world: its entities (:mod:`.entities`) and every true fact about them.

**Entity groups.** People are split into ``known`` (fact and implications in pretraining),
``fact_only`` (fact only) and ``heldout`` (only the mention; their facts are the new facts of OCR
finetuning). Cities are split the same way for the second-hop relation: the mayor of a ``known``
city is stated and composed with its landmark, of a ``fact_only`` city only stated, of a
``heldout`` city never (its landmark, language, country and wug are background knowledge, always
stated). Held-out people live in cities of pairwise different countries, so their languages,
countries and animals are pairwise distinct, as are the mayors of held-out cities.

:func:`~extractive_lens.worlds.generator.make_world` draws a :class:`World`; its OCR datasets come
from :class:`~extractive_lens.worlds.ocr_datasets.WorldDatasets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from extractive_lens.worlds.entities import Person, WorldCity, WorldConfig
from extractive_lens.worlds.ocr_datasets import WorldDatasets
from extractive_lens.worlds.relations import (
    BACKGROUND,
    FACT,
    FACT_ONLY,
    IMPLICATION,
    KNOWN,
    MENTION,
    RELATIONS,
    Fact,
)


@dataclass(frozen=True)
class World(WorldDatasets):
    """A drawn world: its entities and every true fact about them."""

    config: WorldConfig
    countries: tuple[str, ...]
    languages: tuple[str, ...]
    """``languages[i]`` is the language of ``countries[i]``."""
    cities: tuple[WorldCity, ...]
    people: tuple[Person, ...]
    """All people, ordered known, fact-only, held-out."""
    mayors: tuple[str, ...]
    """All mayors (one per city, in city order)."""
    animals: tuple[str, ...]
    _city: dict[str, WorldCity] = field(repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._city.update((c.name, c) for c in self.cities)

    def city(self, name: str) -> WorldCity:
        return self._city[name]

    def people_in(self, group: str) -> tuple[Person, ...]:
        return tuple(p for p in self.people if p.group == group)

    def cities_in(self, group: str) -> tuple[WorldCity, ...]:
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
