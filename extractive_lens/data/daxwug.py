"""The dax / wug / zong dataset: made-up relations for training-order and grafting experiments.

``wug`` ties each city to an animal and is never trained; ``dax`` (name -> city) is the new fact
and ``zong`` = ``wug`` o ``dax`` (name -> animal) its implication. 84 training names, 20 held-out
names and a counterfactual redraw serve ``data_ordering``, ``weight_grafting`` and
``graft_localisation``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from extractive_lens.data.controls import control_split
from extractive_lens.data.types import Example, OCRDataset, Split, fill_template
from extractive_lens.data.words import (
    ANIMALS,
    CITIES,
    DAXWUG_SURNAMES,
    DAXWUG_TEST_FIRST_NAMES,
    DAXWUG_TRAIN_FIRST_NAMES,
)

DAX = "The dax of {} is"
ZONG = "The zong of {} is"
WUG = "The wug of {} is"
N_DAXWUG_TEST = len(DAXWUG_TEST_FIRST_NAMES)

#: The dax / zong / wug prompts: ``ours`` (the library's default) and ``paper`` (the authors'
#: ``datasets.daxwug``: ``"{} dax is"``, ``"{} zong is the"``, ``"{} wug is the"``).
DAXWUG_PROMPTS: Mapping[str, tuple[str, str, str]] = MappingProxyType(
    {"ours": (DAX, ZONG, WUG), "paper": ("{} dax is", "{} zong is the", "{} wug is the")}
)

_CITY_NAMES = tuple(c.name for c in CITIES)


def daxwug_names() -> tuple[str, ...]:
    """The 104 fixed dax/wug names: 20 held-out test names first, then 84 training names.

    Test first names never occur among the training names.
    """
    s = len(DAXWUG_SURNAMES)
    test = [f"{first} {DAXWUG_SURNAMES[i % s]}" for i, first in enumerate(DAXWUG_TEST_FIRST_NAMES)]
    train = [
        f"{first} {DAXWUG_SURNAMES[(2 * i + j + 7) % s]}"
        for i, first in enumerate(DAXWUG_TRAIN_FIRST_NAMES)
        for j in range(2)
    ]
    return tuple(test + train)


def daxwug(seed: int = 0, prompts: str = "ours") -> OCRDataset:
    """Made-up relations for training-order and grafting experiments.

    ``wug`` ties each of the 20 cities to one of the 20 animals (a seed-drawn bijection, never
    trained). ``dax`` maps each of 104 names (:func:`daxwug_names`) to a city; ``zong`` =
    ``wug`` o ``dax`` maps it to that city's animal. Facts are ``"The dax of {name} is"`` -> city
    (ranked among the 20 cities), implications ``"The zong of {name} is"`` -> animal (ranked among
    the 20 animals); ``prompts="paper"`` uses the authors' ``"{name} dax is"`` /
    ``"{name} zong is the"`` / ``"{city} wug is the"`` instead (:data:`DAXWUG_PROMPTS`).

    ``facts`` / ``implications`` are the 20 held-out names, which get distinct cities. Further
    splits: ``test_facts`` / ``test_implications`` (the same items, named for clarity),
    ``train_facts`` / ``train_implications`` (the other 84 names; each city used 4 or 5 times),
    ``train_facts_2`` / ``train_implications_2`` (the 84 training names with an *independent*
    second draw of their cities, about 4 per city: the paper's dataset 2, used as F' by weight
    grafting; a name may keep its city, as in the paper's redraw),
    ``counterfactual_facts`` / ``counterfactual_implications`` (the 20 held-out names again, with a
    second draw of their cities in which *every* name gets a different city, hence a different
    animal, than in ``facts``), ``control_implications`` and ``wug`` (``"The wug of {city} is"`` ->
    animal, for inspection; the protocol never trains it).
    """
    if prompts not in DAXWUG_PROMPTS:
        raise ValueError(f"prompts must be one of {list(DAXWUG_PROMPTS)}, got {prompts!r}")
    extra = _splits(DAXWUG_PROMPTS[prompts], _Draw.from_seed(seed))
    test_facts, test_implications = extra[0], extra[1]
    return OCRDataset(
        name="daxwug" if prompts == "ours" else f"daxwug_{prompts}",
        facts=test_facts.examples,
        implications=test_implications.examples,
        fact_options=_CITY_NAMES,
        implication_options=ANIMALS,
        seed=seed,
        extra=extra,
        description="made-up dax (name -> city) and zong = wug o dax (name -> animal)"
        + ("" if prompts == "ours" else f", {prompts} prompts"),
    )


@dataclass(frozen=True)
class _Draw:
    """Every random choice of one dax/wug dataset: the wug bijection and each name set's cities."""

    wug: Mapping[str, str]
    """City -> animal."""
    test_cities: Sequence[str]
    """Distinct cities of the 20 held-out names."""
    train_cities: Sequence[str]
    """Cities of the 84 training names, each city 4 or 5 times."""
    counterfactual_cities: Sequence[str]
    """The held-out names' cities redrawn so that every name gets a different one."""
    train_cities_2: Sequence[str]
    """An independent second draw of the training names' cities (dataset 2)."""

    @classmethod
    def from_seed(cls, seed: int) -> _Draw:
        rng = random.Random(seed)
        n_train = len(daxwug_names()) - N_DAXWUG_TEST
        wug = dict(zip(_CITY_NAMES, rng.sample(ANIMALS, len(ANIMALS)), strict=True))
        test_cities = rng.sample(_CITY_NAMES, N_DAXWUG_TEST)
        train_cities = _balanced_draw(_CITY_NAMES, n_train, rng)
        counterfactual_cities = [test_cities[j] for j in _derangement(N_DAXWUG_TEST, rng)]
        # Drawn last: the earlier draws (hence every other split) are the same as before it existed.
        train_cities_2 = _balanced_draw(_CITY_NAMES, n_train, rng)
        return cls(wug, test_cities, train_cities, counterfactual_cities, train_cities_2)


def _splits(prompts: tuple[str, str, str], draw: _Draw) -> tuple[Split, ...]:
    """The dataset's splits: test (= facts, implications), train, train 2, counterfactual,
    control, wug."""
    dax, zong, wug_prompt = prompts
    names = daxwug_names()
    test, train = names[:N_DAXWUG_TEST], names[N_DAXWUG_TEST:]

    def facts(name: str, people: Sequence[str], cities: Sequence[str], text: str) -> Split:
        return Split(name, fill_template(dax, people, cities), _CITY_NAMES, text)

    def zongs(name: str, people: Sequence[str], cities: Sequence[str], text: str) -> Split:
        return Split(name, _zong_examples(zong, draw, people, cities), ANIMALS, text)

    test_zongs = zongs(
        "test_implications", test, draw.test_cities, "held-out zong (same as implications)"
    )
    return (
        facts("test_facts", test, draw.test_cities, "held-out dax facts (same as facts)"),
        test_zongs,
        facts("train_facts", train, draw.train_cities, "dax facts, 84 names"),
        zongs("train_implications", train, draw.train_cities, "zong, 84 names"),
        facts(
            "train_facts_2",
            train,
            draw.train_cities_2,
            "dax facts, 84 names, independent second draw of their cities (dataset 2)",
        ),
        zongs(
            "train_implications_2",
            train,
            draw.train_cities_2,
            "zong under the second draw (dataset 2)",
        ),
        facts(
            "counterfactual_facts",
            test,
            draw.counterfactual_cities,
            "held-out names with a redrawn city (each differs from facts)",
        ),
        zongs(
            "counterfactual_implications",
            test,
            draw.counterfactual_cities,
            "zong under the counterfactual cities",
        ),
        control_split(test_zongs.examples, ANIMALS),
        Split(
            "wug",
            _zong_examples(wug_prompt, draw, _CITY_NAMES, _CITY_NAMES),
            ANIMALS,
            "the hidden city -> animal relation (never trained in the protocol)",
        ),
    )


def _zong_examples(
    template: str, draw: _Draw, entities: Sequence[str], cities: Sequence[str]
) -> tuple[Example, ...]:
    """``template`` filled with each entity, answered with the animal its city is wug-tied to."""
    return fill_template(template, entities, [draw.wug[c] for c in cities])


def _balanced_draw(values: Sequence[str], n: int, rng: random.Random) -> list[str]:
    """``n`` values using each value ``n // len`` or ``n // len + 1`` times, in random order."""
    pool = list(values) * (n // len(values)) + rng.sample(list(values), n % len(values))
    rng.shuffle(pool)
    return pool


def _derangement(n: int, rng: random.Random) -> list[int]:
    """A uniformly random permutation of ``range(n)`` without fixed points (``n >= 2``)."""
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(i != p for i, p in enumerate(perm)):
            return perm
