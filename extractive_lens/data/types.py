"""The records of an OCR dataset: :class:`Example`, :class:`Split` and :class:`OCRDataset`.

An :class:`Example` is a prompt without trailing space and an answer without leading space; the
full text is ``prompt + " " + answer``. Each split is ranked against its own option set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FACTS = "facts"
IMPLICATIONS = "implications"
CONTROL = "control_implications"


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


def fill_template(
    template: str, entities: Sequence[str], answers: Sequence[str]
) -> tuple[Example, ...]:
    """One :class:`Example` per entity: ``template`` filled with it, paired with its answer."""
    return tuple(
        Example.from_template(template, e, a) for e, a in zip(entities, answers, strict=True)
    )
