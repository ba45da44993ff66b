"""Datasets of new facts and their implications, for out-of-context reasoning (OCR) experiments.

A model is finetuned on **facts** ("Grace Miller lives in Mumbai") and tested on their
**implications** ("The people in the city Grace Miller is from speak" -> "Hindi"). Each item is an
:class:`Example`: a prompt without trailing space and an answer without leading space; the full text
is ``prompt + " " + answer``. A split is ranked against an option set: the metric takes, at the last
prompt position, the logit of the first token of ``" " + option`` for every option, so the options'
first tokens must be distinct (:func:`validate` checks this for a given tokenizer).

Built-in datasets (deterministic for a seed; :data:`DATASETS` maps their names to the builders):

- :func:`first_hop`: the fact is the first hop (person -> city); the model knows city -> language.
- :func:`second_hop`: the fact is the second hop (city -> mayor); the model knows landmark -> city.
- :func:`daxwug`: made-up relations ``dax`` (name -> city) and ``zong`` (name -> animal, the
  composition of the never-trained ``wug``: city -> animal with ``dax``), with 84 training names,
  20 held-out names and a counterfactual redraw for weight grafting.

Every built-in dataset also has a ``control_implications`` split: the implication prompts paired
with a deranged answer assignment (item ``i`` gets the answer of item ``(i + 7) mod n``). Each
answer occurs once in it, so any predictor that ignores the entity stays near chance there; a real
OCR effect shows as an implication rank well below the control rank.

User datasets are JSON Lines files (:func:`load_dataset_file`, :func:`save_dataset_file`):

- an optional **header** as the first line: an object with ``"name"`` (required in a header) and
  optionally ``"seed"`` (int), ``"description"`` (str), ``"fact_paraphrases"`` (list of templates
  with ``{}``), ``"options"`` (split name -> list of options) and ``"descriptions"`` (split name ->
  str);
- then one **example** per line: ``{"split": ..., "prompt": ..., "answer": ...}`` with optional
  ``"entity"`` and ``"template"`` (both strings or null). ``"split"`` is ``"facts"``,
  ``"implications"`` or any other split name; ``facts`` and ``implications`` must both occur.

A split without options in the header is ranked against the sorted unique answers of that split.
Blank lines are skipped; unknown keys are errors (they are usually typos).

Split names with a meaning (any other name is a plain extra split, ranked but not interpreted):

- ``facts`` (required): trained on. ``implications`` (required): where OCR is measured.
- ``control_implications``: the implication prompts with permuted answers, the baseline every
  OCR verdict is judged against; item ``i`` should be ``implications[i]``'s prompt. Omitted, it is
  generated when an experiment runs (:func:`with_control`): the shift-by-7 pairing if no item
  keeps its own answer, else the answer-grouped pairing (:func:`grouped_control`), which is
  valid whenever no answer belongs to more than half of the items. The verdict names which.
- ``known_*`` (e.g. ``known_implications``, ``known_hop``): capability pre-checks, ranked before
  training on entities the model already knows (``known_implications``: can it do the two-hop at
  all? ``known_hop``: does it know the hop the facts are composed with?).
- ``train_facts`` / ``train_implications``, ``test_facts`` / ``test_implications``,
  ``counterfactual_facts`` / ``counterfactual_implications``, ``wug``: the dax/zong protocol's
  parts (:func:`daxwug`), required by ``data_ordering``, ``weight_grafting`` and
  ``graft_localisation``, which say so when one is missing.

For example::

    {"name": "tiny", "options": {"facts": ["Paris", "Rome"], "implications": ["French", "Italian"]}}
    {"split": "facts", "prompt": "Ann Lee lives in", "answer": "Paris", "entity": "Ann Lee"}
    {"split": "implications", "prompt": "Ann Lee speaks", "answer": "French"}
    {"split": "facts", "prompt": "Bo Ng lives in", "answer": "Rome", "template": null}
    {"split": "implications", "prompt": "Bo Ng speaks", "answer": "Italian"}

Example:

>>> ds = first_hop(seed=0)
>>> len(ds.facts), len(ds.implication_options)
(20, 20)
>>> ds.facts[0].text == ds.facts[0].prompt + " " + ds.facts[0].answer
True
>>> sorted(ds.splits())
['control_implications', 'facts', 'implications', 'known_hop', 'known_implications']
>>> ds.options_for("control_implications") == ds.implication_options
True
"""

from __future__ import annotations

import functools
import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from extractive_lens.word_lists import (
    ANIMALS,
    CITIES,
    DAXWUG_SURNAMES,
    DAXWUG_TEST_FIRST_NAMES,
    DAXWUG_TRAIN_FIRST_NAMES,
    PEOPLE,
    City,
)

__all__ = [
    "ANIMALS",
    "CITIES",
    "CONTROL_SHIFT",
    "DATASETS",
    "PEOPLE",
    "City",
    "Example",
    "OCRDataset",
    "Split",
    "control_shift",
    "control_split",
    "daxwug",
    "deranged_control",
    "first_hop",
    "first_token_ids",
    "get_dataset",
    "grouped_control",
    "load_dataset_file",
    "save_dataset_file",
    "second_hop",
    "validate",
    "with_control",
]

CONTROL_SHIFT = 7
"""Default offset of the control pairing: item ``i`` gets the answer of item ``(i + 7) mod n``."""

FACTS = "facts"
IMPLICATIONS = "implications"
CONTROL = "control_implications"


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Example:
    """One prompt and its answer; the model is trained on / scored for ``prompt + " " + answer``."""

    prompt: str
    """The prompt, without trailing whitespace, e.g. ``"Grace Miller lives in"``."""
    answer: str
    """The correct answer, without leading whitespace, e.g. ``"Mumbai"``. It is appended as
    ``" " + answer``; ranking uses only the first token of ``" " + answer``."""
    entity: str | None = None
    """The span of the prompt that varies between items of one template (e.g. the person's name),
    used to align token positions across items. ``None`` when unknown."""
    template: str | None = None
    """The prompt with ``{}`` in place of :attr:`entity`, e.g.
    ``"The people in the city {} is from speak"``; items sharing it are token-alignable.
    If given, :attr:`entity` must be given too and ``template.replace("{}", entity) == prompt``."""

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not isinstance(self.answer, str):
            raise TypeError(f"prompt and answer must be strings, got {self!r}")
        if self.template is None:
            return
        if self.template.count("{}") != 1:
            raise ValueError(f"template {self.template!r} must contain '{{}}' exactly once")
        if self.entity is None:
            raise ValueError(f"template {self.template!r} is given without an entity")
        if self.template.replace("{}", self.entity) != self.prompt:
            raise ValueError(
                f"template {self.template!r} filled with entity {self.entity!r} does not give "
                f"the prompt {self.prompt!r}"
            )

    @classmethod
    def from_template(cls, template: str, entity: str, answer: str) -> Example:
        """The example whose prompt is ``template`` with ``entity`` in place of ``{}``."""
        return cls(template.replace("{}", entity), answer, entity=entity, template=template)

    @property
    def text(self) -> str:
        """The full text ``prompt + " " + answer`` (what finetuning trains on)."""
        return f"{self.prompt} {self.answer}"


@dataclass(frozen=True)
class Split:
    """A named split beyond facts and implications, with its own option set."""

    name: str
    """The split's name, e.g. ``"control_implications"``."""
    examples: tuple[Example, ...]
    """The split's items (lists are converted to tuples)."""
    options: tuple[str, ...]
    """The options each item is ranked against (its answer must be one of them)."""
    description: str = ""
    """One line on what the split is for."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "examples", _tuple_of_examples(self.examples, self.name))
        object.__setattr__(self, "options", _tuple_of_str(self.options, f"options of {self.name}"))


@dataclass(frozen=True)
class OCRDataset:
    """Facts to finetune on, their implications to test, and further named splits.

    Items of the built-in datasets are aligned by index: ``facts[i]``, ``implications[i]`` and
    ``control_implications[i]`` concern the same entity.
    """

    name: str
    """The dataset's name, e.g. ``"first_hop"``."""
    facts: tuple[Example, ...]
    """The new facts the model is finetuned on."""
    implications: tuple[Example, ...]
    """Their implications, never trained on; OCR is measured here."""
    fact_options: tuple[str, ...]
    """The options :attr:`facts` are ranked against (for built-ins: every fact answer of the
    world, 20 options, chance mean rank 9.5)."""
    implication_options: tuple[str, ...]
    """The options :attr:`implications` are ranked against."""
    seed: int = 0
    """The seed the dataset was drawn with."""
    extra: tuple[Split, ...] = ()
    """Further named splits (controls, capability checks, train/test parts, counterfactuals), each
    with its own options. Their names differ from each other and from ``"facts"`` and
    ``"implications"``."""
    fact_paraphrases: tuple[str, ...] = ()
    """Alternative templates (with ``{}`` for the entity) stating the same facts, for augmentation;
    see :meth:`paraphrased_facts`."""
    description: str = ""
    """A short description of the dataset."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "facts", _tuple_of_examples(self.facts, FACTS))
        object.__setattr__(
            self, "implications", _tuple_of_examples(self.implications, IMPLICATIONS)
        )
        object.__setattr__(self, "fact_options", _tuple_of_str(self.fact_options, "fact_options"))
        object.__setattr__(
            self,
            "implication_options",
            _tuple_of_str(self.implication_options, "implication_options"),
        )
        object.__setattr__(self, "extra", tuple(self.extra))
        object.__setattr__(
            self, "fact_paraphrases", _tuple_of_str(self.fact_paraphrases, "fact_paraphrases")
        )
        for split, examples in ((FACTS, self.facts), (IMPLICATIONS, self.implications)):
            if not examples:
                raise ValueError(
                    f"dataset {self.name!r}: the split {split!r} is empty; give it at least one "
                    "Example (facts are trained on, implications are where OCR is measured)"
                )
        names = [FACTS, IMPLICATIONS] + [s.name for s in self.extra]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"dataset {self.name!r}: duplicate split names {duplicates}")
        for template in self.fact_paraphrases:
            if template.count("{}") != 1:
                raise ValueError(f"fact paraphrase {template!r} must contain '{{}}' exactly once")

    def splits(self) -> dict[str, tuple[Example, ...]]:
        """Split name -> examples: ``facts``, ``implications``, then the :attr:`extra` splits."""
        return {name: split.examples for name, split in self._split_records().items()}

    def split(self, name: str) -> Split:
        """The full record (examples, options, description) of the split ``name``."""
        records = self._split_records()
        if name not in records:
            raise KeyError(f"dataset {self.name!r} has no split {name!r}; it has {list(records)}")
        return records[name]

    def options_for(self, split: str) -> tuple[str, ...]:
        """The option set that the examples of ``split`` are ranked against."""
        return self.split(split).options

    def paraphrased_facts(self) -> tuple[Example, ...]:
        """Every fact restated with every template of :attr:`fact_paraphrases` (same answers).

        Facts without an entity cannot be restated and raise ``ValueError``.
        """
        out = []
        for template in self.fact_paraphrases:
            for fact in self.facts:
                if fact.entity is None:
                    raise ValueError(f"fact {fact.prompt!r} has no entity to paraphrase")
                out.append(Example.from_template(template, fact.entity, fact.answer))
        return tuple(out)

    def _split_records(self) -> dict[str, Split]:
        records = {
            FACTS: Split(FACTS, self.facts, self.fact_options, "the new facts (trained)"),
            IMPLICATIONS: Split(
                IMPLICATIONS, self.implications, self.implication_options, "their implications"
            ),
        }
        records.update((s.name, s) for s in self.extra)
        return records


def _tuple_of_examples(values: Iterable[Example], split: str) -> tuple[Example, ...]:
    out = tuple(values)
    bad = [v for v in out if not isinstance(v, Example)]
    if bad:
        raise TypeError(f"split {split!r} must hold Example objects; got {bad[:3]!r}")
    return out


def _tuple_of_str(values: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError(f"{what} must be a sequence of strings, not a single string {values!r}")
    out = tuple(values)
    bad = [v for v in out if not isinstance(v, str)]
    if bad:
        raise TypeError(f"{what} must be strings; got {bad[:3]!r}")
    return out


# --------------------------------------------------------------------------- shared builders


def _examples(
    template: str, entities: Sequence[str], answers: Sequence[str]
) -> tuple[Example, ...]:
    return tuple(
        Example.from_template(template, e, a) for e, a in zip(entities, answers, strict=True)
    )


def control_shift(n: int, shift: int = CONTROL_SHIFT) -> int:
    """The offset used for a control pairing of ``n`` items: ``shift mod n``, or 1 if that is 0."""
    if n < 2:
        raise ValueError(f"a control pairing needs at least 2 items, got {n}")
    return shift % n or 1


def deranged_control(
    examples: Sequence[Example], shift: int = CONTROL_SHIFT
) -> tuple[Example, ...]:
    """The control split: item ``i``'s prompt with the answer of item ``(i + shift) mod n``.

    The offset is :func:`control_shift` ``(n, shift)``. Raises ``ValueError`` if some item would
    keep its own answer (possible only when answers repeat): that would not be a control.

    >>> ex = [Example(f"p{i}", a) for i, a in enumerate("abc")]
    >>> [e.answer for e in deranged_control(ex)]
    ['b', 'c', 'a']
    """
    n = len(examples)
    k = control_shift(n, shift)
    out = tuple(
        Example(e.prompt, examples[(i + k) % n].answer, e.entity, e.template)
        for i, e in enumerate(examples)
    )
    kept = [
        i
        for i, (old, new) in enumerate(zip(examples, out, strict=True))
        if old.answer == new.answer
    ]
    if kept:
        raise ValueError(
            f"control pairing with shift {k} is not a derangement: items {kept} keep their answer"
        )
    return out


def _derangement(n: int, rng: random.Random) -> list[int]:
    """A uniformly random permutation of ``range(n)`` without fixed points (``n >= 2``)."""
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(i != p for i, p in enumerate(perm)):
            return perm


def _check_n_people(n_people: int) -> None:
    limit = min(len(PEOPLE), len(CITIES))
    if not 2 <= n_people <= limit:
        raise ValueError(f"n_people must be between 2 and {limit}, got {n_people}")


def grouped_control(examples: Sequence[Example]) -> tuple[Example, ...]:
    """A control pairing valid when answers repeat: no item gets an answer equal to its own.

    Items are ordered by answer (stably), and the item at sorted position ``j`` gets the answer
    of the item at ``(j + m) mod n``, where ``m`` is the size of the largest answer group. Every
    answer is still used exactly as often as in ``examples`` (it is a permutation), so an
    entity-blind predictor scores the same on both. Possible exactly when no answer belongs to
    more than half of the items; otherwise ``ValueError`` says which answer is too common.

    >>> ex = [Example(f"p{i}", a) for i, a in enumerate("aabbc")]
    >>> [e.answer for e in grouped_control(ex)]
    ['b', 'b', 'c', 'a', 'a']
    """
    n = len(examples)
    counts = Counter(e.answer for e in examples)
    answer, m = counts.most_common(1)[0] if counts else ("", 0)
    if n < 2 or 2 * m > n:
        raise ValueError(
            f"no control pairing exists: the answer {answer!r} belongs to {m} of {n} items, and a "
            "pairing that never gives an item its own answer needs every answer on at most half "
            f"of them. Add a {CONTROL!r} split to the dataset file yourself."
        )
    order = sorted(range(n), key=lambda i: examples[i].answer)
    partner = {order[j]: order[(j + m) % n] for j in range(n)}
    return tuple(
        Example(e.prompt, examples[partner[i]].answer, e.entity, e.template)
        for i, e in enumerate(examples)
    )


def control_split(implications: Sequence[Example], options: Sequence[str]) -> Split:
    """The control split for ``implications``: the shift pairing (:func:`deranged_control`) when
    it is a derangement, else the answer-grouped pairing (:func:`grouped_control`). Its
    description says which, and verdicts quote it."""
    try:
        pairing = deranged_control(implications)
        how = (
            f"item i gets the answer of item i+{control_shift(len(implications))}"
            " (deranged-pairing control)"
        )
    except ValueError:
        pairing = grouped_control(implications)
        how = (
            "items sorted by answer, each given the answer of the item one largest answer group "
            "further on (grouped-pairing control: answers repeat, none stays with its item)"
        )
    return Split(
        CONTROL,
        pairing,
        tuple(options),
        f"implication prompts with permuted answers: {how}; an entity-blind predictor scores "
        "the same here as on the implications",
    )


def with_control(dataset: OCRDataset) -> OCRDataset:
    """``dataset`` with a generated ``control_implications`` split if it has none.

    Returns ``dataset`` itself when it already has one, or when no valid pairing exists (every
    answer the same, say): the OCR verdict then says that no control could be built.
    """
    if CONTROL in dataset.splits():
        return dataset
    try:
        control = control_split(dataset.implications, dataset.implication_options)
    except ValueError:
        return dataset
    return replace(dataset, extra=(*dataset.extra, control))


# --------------------------------------------------------------------------- first hop

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
    implications = _examples(FIRST_HOP_IMPLICATION, people, [c.language for c in cities])
    extra = (
        control_split(implications, language_options),
        Split(
            "known_implications",
            _examples(
                FIRST_HOP_IMPLICATION,
                [c.famous_person for c in CITIES],
                [c.language for c in CITIES],
            ),
            language_options,
            "the implication template on famous real people (latent two-hop capability check)",
        ),
        Split(
            "known_hop",
            _examples(FIRST_HOP_KNOWN_HOP, city_options, language_options),
            language_options,
            "city -> language on the real cities (does the model know the second hop?)",
        ),
    )
    return OCRDataset(
        name="first_hop",
        facts=_examples(FIRST_HOP_FACT, people, [c.name for c in cities]),
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
    implications = _examples(SECOND_HOP_IMPLICATION, [c.landmark for c in cities], people)
    city_options = tuple(c.name for c in CITIES)
    extra = (
        control_split(implications, PEOPLE),
        Split(
            "known_hop",
            _examples(SECOND_HOP_KNOWN_HOP, [c.landmark for c in CITIES], city_options),
            city_options,
            "landmark -> city on the real cities (does the model know the first hop?)",
        ),
    )
    return OCRDataset(
        name="second_hop",
        facts=_examples(SECOND_HOP_FACT, [c.name for c in cities], people),
        implications=implications,
        fact_options=PEOPLE,
        implication_options=PEOPLE,
        seed=seed,
        extra=extra,
        fact_paraphrases=SECOND_HOP_PARAPHRASES,
        description="new fact city -> mayor; implication landmark -> city from pretraining",
    )


# --------------------------------------------------------------------------- dax / wug / zong

DAX = "The dax of {} is"
ZONG = "The zong of {} is"
WUG = "The wug of {} is"
N_DAXWUG_TEST = len(DAXWUG_TEST_FIRST_NAMES)

#: The dax / zong / wug prompts: ``ours`` (the library's default) and ``paper`` (the authors'
#: ``datasets.daxwug``: ``"{} dax is"``, ``"{} zong is the"``, ``"{} wug is the"``).
DAXWUG_PROMPTS: Mapping[str, tuple[str, str, str]] = MappingProxyType(
    {"ours": (DAX, ZONG, WUG), "paper": ("{} dax is", "{} zong is the", "{} wug is the")}
)


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
    dax, zong, wug_prompt = DAXWUG_PROMPTS[prompts]
    rng = random.Random(seed)
    names = daxwug_names()
    test_names, train_names = names[:N_DAXWUG_TEST], names[N_DAXWUG_TEST:]
    city_names = tuple(c.name for c in CITIES)
    wug = dict(zip(city_names, rng.sample(ANIMALS, len(ANIMALS)), strict=True))

    test_cities = rng.sample(city_names, N_DAXWUG_TEST)
    train_cities = _balanced_draw(city_names, len(train_names), rng)
    counterfactual_cities = [test_cities[j] for j in _derangement(N_DAXWUG_TEST, rng)]
    train_cities_2 = _balanced_draw(city_names, len(train_names), rng)  # drawn last: the
    # earlier draws (hence every other split) are the same as before it existed

    def facts(people: Sequence[str], cities: Sequence[str]) -> tuple[Example, ...]:
        return _examples(dax, people, cities)

    def zongs(people: Sequence[str], cities: Sequence[str]) -> tuple[Example, ...]:
        return _examples(zong, people, [wug[c] for c in cities])

    test_facts, test_impls = facts(test_names, test_cities), zongs(test_names, test_cities)

    def split(name: str, examples: tuple[Example, ...], animals: bool, text: str) -> Split:
        return Split(name, examples, ANIMALS if animals else city_names, text)

    extra = (
        split("test_facts", test_facts, False, "held-out dax facts (same as facts)"),
        split("test_implications", test_impls, True, "held-out zong (same as implications)"),
        split("train_facts", facts(train_names, train_cities), False, "dax facts, 84 names"),
        split("train_implications", zongs(train_names, train_cities), True, "zong, 84 names"),
        split(
            "train_facts_2",
            facts(train_names, train_cities_2),
            False,
            "dax facts, 84 names, independent second draw of their cities (dataset 2)",
        ),
        split(
            "train_implications_2",
            zongs(train_names, train_cities_2),
            True,
            "zong under the second draw (dataset 2)",
        ),
        split(
            "counterfactual_facts",
            facts(test_names, counterfactual_cities),
            False,
            "held-out names with a redrawn city (each differs from facts)",
        ),
        split(
            "counterfactual_implications",
            zongs(test_names, counterfactual_cities),
            True,
            "zong under the counterfactual cities",
        ),
        control_split(test_impls, ANIMALS),
        split(
            "wug",
            _examples(wug_prompt, city_names, [wug[c] for c in city_names]),
            True,
            "the hidden city -> animal relation (never trained in the protocol)",
        ),
    )
    return OCRDataset(
        name="daxwug" if prompts == "ours" else f"daxwug_{prompts}",
        facts=test_facts,
        implications=test_impls,
        fact_options=city_names,
        implication_options=ANIMALS,
        seed=seed,
        extra=extra,
        description="made-up dax (name -> city) and zong = wug o dax (name -> animal)"
        + ("" if prompts == "ours" else f", {prompts} prompts"),
    )


def _balanced_draw(values: Sequence[str], n: int, rng: random.Random) -> list[str]:
    """``n`` values using each value ``n // len`` or ``n // len + 1`` times, in random order."""
    pool = list(values) * (n // len(values)) + rng.sample(list(values), n % len(values))
    rng.shuffle(pool)
    return pool


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


# --------------------------------------------------------------------------- validation


def first_token_ids(tokenizer: Any, options: Sequence[str]) -> list[int]:
    """The id of the first token of ``" " + option`` for each option (no special tokens).

    This is the token whose logit ranks the option. Raises ``ValueError`` for an option that
    tokenizes to nothing.
    """
    options = _tuple_of_str(options, "options")
    if not options:
        return []
    encoded = tokenizer([" " + o for o in options], add_special_tokens=False)["input_ids"]
    ids = []
    for option, tokens in zip(options, encoded, strict=True):
        if len(tokens) == 0:
            raise ValueError(f"option {option!r} tokenizes to no tokens")
        ids.append(int(tokens[0]))
    return ids


def validate(
    target: OCRDataset | Split | Sequence[Example],
    tokenizer: Any,
    options: Sequence[str] | None = None,
) -> None:
    """Check a dataset, split or list of examples for use with ``tokenizer``; ``None`` if fine.

    Raises one ``ValueError`` listing every problem, each naming the split and the offending item:
    empty splits or option sets, duplicate options, options with surrounding whitespace, prompts
    ending in whitespace, answers starting with whitespace, answers missing from their option set,
    and options whose first tokens (:func:`first_token_ids`) coincide, with the shared token.

    ``options`` applies only to a plain sequence of examples; without it, the sorted unique answers
    are used.
    """
    if isinstance(target, OCRDataset | Split) and options is not None:
        raise TypeError("options= is only for a plain sequence of examples; datasets carry theirs")
    if isinstance(target, OCRDataset):
        splits = list(target._split_records().values())
    elif isinstance(target, Split):
        splits = [target]
    else:
        examples = tuple(target)
        if options is None:
            options = sorted({e.answer for e in examples})
        splits = [Split("examples", examples, tuple(options))]
    problems = [p for s in splits for p in _split_problems(s, tokenizer)]
    if problems:
        raise ValueError("dataset validation failed:\n" + "\n".join(f"  - {p}" for p in problems))


def _split_problems(split: Split, tokenizer: Any) -> list[str]:
    where = f"split {split.name!r}"
    problems = []
    if not split.examples:
        problems.append(f"{where}: has no examples")
    if not split.options:
        problems.append(f"{where}: has no options")
    seen: set[str] = set()
    for option in split.options:
        if option in seen:
            problems.append(f"{where}: duplicate option {option!r}")
        seen.add(option)
        if option != option.strip() or not option:
            problems.append(f"{where}: option {option!r} is empty or has surrounding whitespace")
    for i, ex in enumerate(split.examples):
        item = f"{where}, example {i} (prompt {ex.prompt!r})"
        if ex.prompt != ex.prompt.rstrip():
            problems.append(f"{item}: prompt ends in whitespace")
        if ex.answer != ex.answer.lstrip():
            problems.append(f"{item}: answer {ex.answer!r} starts with whitespace")
        if ex.answer not in seen:
            problems.append(f"{item}: answer {ex.answer!r} is not among the options")
    problems.extend(_collision_problems(split, tokenizer))
    return problems


def _collision_problems(split: Split, tokenizer: Any) -> list[str]:
    unique = [o for o in dict.fromkeys(split.options) if o.strip()]
    try:
        ids = first_token_ids(tokenizer, unique)
    except ValueError as err:
        return [f"split {split.name!r}: {err}"]
    by_token: dict[int, list[str]] = {}
    for option, token in zip(unique, ids, strict=True):
        by_token.setdefault(token, []).append(option)
    return [
        f"split {split.name!r}: options {', '.join(map(repr, group))} share the first token "
        f"{tokenizer.decode([token])!r} (id {token}), so the ranking cannot tell them apart"
        for token, group in by_token.items()
        if len(group) > 1
    ]


# --------------------------------------------------------------------------- JSONL files

_HEADER_KEYS = {"name", "seed", "description", "fact_paraphrases", "options", "descriptions"}
_EXAMPLE_KEYS = {"split", "prompt", "answer", "entity", "template"}


def load_dataset_file(path: str | Path) -> OCRDataset:
    """Read a dataset from a JSON Lines file (schema in the module docstring).

    Raises ``ValueError`` naming the file and line for malformed lines, and for a file without
    ``facts`` or ``implications`` examples.
    """
    path = Path(path)
    header: dict[str, Any] = {}
    by_split: dict[str, list[Example]] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            if "split" not in record and "name" in record:
                if header or by_split:
                    raise ValueError(f"{where}: a header line is only allowed as the first line")
                header = _parse_header(record, where)
                continue
            split, example = _parse_example(record, where)
            by_split.setdefault(split, []).append(example)
    return _assemble(path, header, by_split)


def _parse_header(record: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(record) - _HEADER_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown header keys {unknown}; allowed: {sorted(_HEADER_KEYS)}")
    if not isinstance(record["name"], str):
        raise ValueError(f"{where}: header 'name' must be a string")
    if not isinstance(record.get("seed", 0), int) or isinstance(record.get("seed"), bool):
        raise ValueError(f"{where}: header 'seed' must be an integer")
    if not isinstance(record.get("description", ""), str):
        raise ValueError(f"{where}: header 'description' must be a string")
    if not _is_str_list(record.get("fact_paraphrases", [])):
        raise ValueError(f"{where}: header 'fact_paraphrases' must be a list of strings")
    for key, check, kind in (
        ("options", _is_str_list, "a list of strings"),
        ("descriptions", lambda v: isinstance(v, str), "a string"),
    ):
        value = record.get(key, {})
        if not isinstance(value, dict):
            raise ValueError(f"{where}: header {key!r} must map split names to {kind}")
        for split, entry in value.items():
            if not check(entry):
                raise ValueError(f"{where}: header {key!r} of split {split!r} must be {kind}")
    return record


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _parse_example(record: dict[str, Any], where: str) -> tuple[str, Example]:
    missing = [k for k in ("split", "prompt", "answer") if k not in record]
    if missing:
        raise ValueError(f"{where}: missing required keys {missing}")
    unknown = sorted(set(record) - _EXAMPLE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed: {sorted(_EXAMPLE_KEYS)}")
    for key in ("split", "prompt", "answer"):
        if not isinstance(record[key], str):
            raise ValueError(f"{where}: {key!r} must be a string, got {record[key]!r}")
    for key in ("entity", "template"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise ValueError(f"{where}: {key!r} must be a string or null, got {record[key]!r}")
    if not record["split"]:
        raise ValueError(f"{where}: 'split' must not be empty")
    try:
        example = Example(
            record["prompt"], record["answer"], record.get("entity"), record.get("template")
        )
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return record["split"], example


def _assemble(path: Path, header: dict[str, Any], by_split: dict[str, list[Example]]) -> OCRDataset:
    missing = [s for s in (FACTS, IMPLICATIONS) if s not in by_split]
    if missing:
        raise ValueError(f"{path}: no examples for the required split(s) {missing}")
    options = header.get("options", {})
    orphans = sorted(set(options) - set(by_split))
    if orphans:
        raise ValueError(f"{path}: header gives options for splits without examples: {orphans}")
    descriptions = header.get("descriptions", {})

    def options_of(split: str) -> tuple[str, ...]:
        if split in options:
            return tuple(options[split])
        return tuple(sorted({e.answer for e in by_split[split]}))

    extra = tuple(
        Split(name, tuple(examples), options_of(name), descriptions.get(name, ""))
        for name, examples in by_split.items()
        if name not in (FACTS, IMPLICATIONS)
    )
    try:
        return OCRDataset(
            name=header.get("name", path.stem),
            facts=tuple(by_split[FACTS]),
            implications=tuple(by_split[IMPLICATIONS]),
            fact_options=options_of(FACTS),
            implication_options=options_of(IMPLICATIONS),
            seed=header.get("seed", 0),
            extra=extra,
            fact_paraphrases=tuple(header.get("fact_paraphrases", ())),
            description=header.get("description", ""),
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def save_dataset_file(dataset: OCRDataset, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``dataset`` as JSON Lines (header with all option sets, then one example per line).

    :func:`load_dataset_file` reads it back to an equal dataset. Raises ``FileExistsError`` if
    ``path`` exists, unless ``overwrite=True``. Returns the path.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    records = dataset._split_records()
    header = {
        "name": dataset.name,
        "seed": dataset.seed,
        "description": dataset.description,
        "fact_paraphrases": list(dataset.fact_paraphrases),
        "options": {name: list(s.options) for name, s in records.items()},
        "descriptions": {s.name: s.description for s in dataset.extra if s.description},
    }
    lines = [json.dumps(header, ensure_ascii=False)]
    for name, split in records.items():
        for ex in split.examples:
            record: dict[str, Any] = {"split": name, "prompt": ex.prompt, "answer": ex.answer}
            if ex.entity is not None:
                record["entity"] = ex.entity
            if ex.template is not None:
                record["template"] = ex.template
            lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
