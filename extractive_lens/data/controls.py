"""Control splits: the implication prompts with permuted answers.

The control pairs item ``i``'s prompt with another item's answer, so that every answer occurs as
often as in the implications while none stays with its own item: a predictor that ignores the
entity scores the same on both, and a real OCR effect shows as an implication rank well below the
control rank. Two pairings: the shift by :data:`CONTROL_SHIFT` (:func:`deranged_control`) and, when
answers repeat so that the shift would leave some item its own answer, the answer-grouped pairing
(:func:`grouped_control`). :func:`control_split` picks between them and says which.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from extractive_lens.data.types import CONTROL, Example, OCRDataset, Split

CONTROL_SHIFT = 7
"""Default offset of the control pairing: item ``i`` gets the answer of item ``(i + 7) mod n``."""


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
