"""The relations of a synthetic world, the templates that render them, and fact triples.

Each relation maps a subject to one answer and is rendered through several paraphrase templates
(:data:`RELATIONS`; the first template is canonical and is the one the OCR datasets test):

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

A :class:`Fact` is one (subject, relation, answer) triple; :meth:`Fact.render` writes it as an
:class:`~extractive_lens.data.Example` in one of its relation's templates.
"""

from __future__ import annotations

from dataclasses import dataclass

from extractive_lens.data import Example

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
