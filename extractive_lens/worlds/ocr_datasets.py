"""The OCR datasets of a synthetic world: its held-out entities' new facts and implications.

:class:`WorldDatasets` gives :class:`~extractive_lens.worlds.world.World` its dataset methods
(``first_hop``, ``zong``, ``country``, ``second_hop``, ``datasets``). Each dataset renders the
held-out entities' facts and implications in the canonical template and adds, as extra splits,
the deranged-pairing control, the known entities' implications (trained in pretraining), the
fact-only entities' implications (a latent two-hop check) and the known hop of the held-out items.
"""

from __future__ import annotations

from collections.abc import Sequence

from extractive_lens.data import (
    CONTROL,
    Example,
    OCRDataset,
    Split,
    control_shift,
    deranged_control,
)
from extractive_lens.worlds.entities import Person, WorldCity
from extractive_lens.worlds.relations import FACT_ONLY, HELDOUT, KNOWN, RELATIONS, Fact


class WorldDatasets:
    """The OCR datasets of a world (a mixin of :class:`~extractive_lens.worlds.world.World`)."""

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

        def rendered(relation: str, cities: Sequence[WorldCity]) -> tuple[Example, ...]:
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
