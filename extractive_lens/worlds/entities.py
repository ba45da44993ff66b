"""The configuration of a synthetic world and the records of its entities (cities, people)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
class WorldCity:
    """A made-up city of a synthetic world (not :class:`extractive_lens.data.words.RealCity`, a
    real city
    of the built-in datasets)."""

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


City = WorldCity
"""The name :class:`WorldCity` had before issue 14; kept importable."""
