"""The built-in datasets of real-world knowledge, and :func:`get_dataset` by name or path.

- :func:`first_hop`: the fact is the first hop (person -> city); the model knows city -> language.
- :func:`second_hop`: the fact is the second hop (city -> mayor); the model knows landmark -> city.
- :func:`~extractive_lens.data.daxwug.daxwug`: made-up relations (see that module).

Each is deterministic for a seed; :data:`DATASETS` maps their names to the builders.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from extractive_lens.data.controls import control_split
from extractive_lens.data.daxwug import daxwug
from extractive_lens.data.jsonl import load_dataset_file
from extractive_lens.data.types import OCRDataset, Split, fill_template
from extractive_lens.data.words import CITIES, PEOPLE

FIRST_HOP_FACT = "{} lives in"
FIRST_HOP_IMPLICATION = "The people in the city {} is from speak"
FIRST_HOP_KNOWN_HOP = "The people in {} speak"
FIRST_HOP_PARAPHRASES = (
    "{} is a resident of",
    "{} resides in",
    "{} has made a home in",
    "{} lives in the city of",
)


def first_hop(seed: int = 0, n_people: int = 20) -> OCRDataset:
    """New first hops: fictional person -> city; implication: the city's language.

    ``n_people`` fictional people (the first ``n_people`` of :data:`PEOPLE`) each get a distinct
    city, drawn with ``random.Random(seed)``. Facts are ``"{person} lives in"`` -> city (ranked
    among all 20 cities); implications are ``"The people in the city {person} is from speak"`` ->
    language (ranked among all 20 languages).

    Splits: ``facts``, ``implications``, ``control_implications``, ``known_implications`` (the
    implication template on 20 famous real people: can the model do the two-hop latently?) and
    ``known_hop`` (``"The people in {city} speak"``: does the model know the second hop?).

    >>> ds = first_hop(seed=1, n_people=5)
    >>> len(ds.facts), len(ds.fact_options)
    (5, 20)
    """
    _check_n_people(n_people)
    rng = random.Random(seed)
    people = PEOPLE[:n_people]
    cities = rng.sample(CITIES, n_people)
    city_options = tuple(c.name for c in CITIES)
    language_options = tuple(c.language for c in CITIES)
    implications = fill_template(FIRST_HOP_IMPLICATION, people, [c.language for c in cities])
    extra = (
        control_split(implications, language_options),
        Split(
            "known_implications",
            fill_template(
                FIRST_HOP_IMPLICATION,
                [c.famous_person for c in CITIES],
                [c.language for c in CITIES],
            ),
            language_options,
            "the implication template on famous real people (latent two-hop capability check)",
        ),
        Split(
            "known_hop",
            fill_template(FIRST_HOP_KNOWN_HOP, city_options, language_options),
            language_options,
            "city -> language on the real cities (does the model know the second hop?)",
        ),
    )
    return OCRDataset(
        name="first_hop",
        facts=fill_template(FIRST_HOP_FACT, people, [c.name for c in cities]),
        implications=implications,
        fact_options=city_options,
        implication_options=language_options,
        seed=seed,
        extra=extra,
        fact_paraphrases=FIRST_HOP_PARAPHRASES,
        description="new fact person -> city; implication city -> language from pretraining",
    )


# --------------------------------------------------------------------------- second hop

SECOND_HOP_FACT = "The mayor of {} is"
SECOND_HOP_IMPLICATION = "The mayor of the city that contains {} is"
SECOND_HOP_KNOWN_HOP = "The city that contains {} is"
SECOND_HOP_PARAPHRASES = (
    "The current mayor of {} is",
    "The person who serves as mayor of {} is",
    "The city of {} is led by its mayor,",
)


def second_hop(seed: int = 0, n_people: int = 20) -> OCRDataset:
    """New second hops: city -> fictional mayor; implication: landmark -> (city ->) mayor.

    ``n_people`` cities (drawn with ``random.Random(seed)``) each get one of the first ``n_people``
    fictional people of :data:`PEOPLE` as mayor. Facts are ``"The mayor of {city} is"`` -> person;
    implications are ``"The mayor of the city that contains {landmark} is"`` -> person. Answers are
    full names; both are ranked among the 20 people of :data:`PEOPLE` (whose first names have
    distinct first tokens). Items are ordered by person, and ``entity`` is the city (facts) or the
    landmark (implications).

    Splits: ``facts``, ``implications``, ``control_implications`` and ``known_hop``
    (``"The city that contains {landmark} is"`` -> city, ranked among the 20 cities: does the model
    know the first hop?).
    """
    _check_n_people(n_people)
    rng = random.Random(seed)
    people = PEOPLE[:n_people]
    cities = rng.sample(CITIES, n_people)
    implications = fill_template(SECOND_HOP_IMPLICATION, [c.landmark for c in cities], people)
    city_options = tuple(c.name for c in CITIES)
    extra = (
        control_split(implications, PEOPLE),
        Split(
            "known_hop",
            fill_template(SECOND_HOP_KNOWN_HOP, [c.landmark for c in CITIES], city_options),
            city_options,
            "landmark -> city on the real cities (does the model know the first hop?)",
        ),
    )
    return OCRDataset(
        name="second_hop",
        facts=fill_template(SECOND_HOP_FACT, [c.name for c in cities], people),
        implications=implications,
        fact_options=PEOPLE,
        implication_options=PEOPLE,
        seed=seed,
        extra=extra,
        fact_paraphrases=SECOND_HOP_PARAPHRASES,
        description="new fact city -> mayor; implication landmark -> city from pretraining",
    )


def _check_n_people(n_people: int) -> None:
    limit = min(len(PEOPLE), len(CITIES))
    if not 2 <= n_people <= limit:
        raise ValueError(f"n_people must be between 2 and {limit}, got {n_people}")


DATASETS: Mapping[str, Callable[..., OCRDataset]] = MappingProxyType(
    {
        "first_hop": first_hop,
        "second_hop": second_hop,
        "daxwug": daxwug,
        "daxwug_paper": functools.partial(daxwug, prompts="paper"),
    }
)
"""The built-in dataset builders by name."""


def get_dataset(name_or_path: str | Path, seed: int = 0) -> OCRDataset:
    """A built-in dataset by name (drawn with ``seed``), or a JSONL file by path."""
    if isinstance(name_or_path, str) and name_or_path in DATASETS:
        return DATASETS[name_or_path](seed=seed)
    path = Path(name_or_path)
    if path.exists():
        return load_dataset_file(path)
    raise ValueError(
        f"{str(name_or_path)!r} is neither a built-in dataset ({', '.join(DATASETS)}) nor a file"
    )
