"""Checks that a dataset can be ranked with a given tokenizer.

The metric ranks an option by the logit of the first token of ``" " + option`` at the last prompt
position (:func:`first_token_ids`), so the options of one split must have distinct first tokens;
:func:`validate` checks that and every other property the ranking relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from extractive_lens.data.types import Example, OCRDataset, Split, _tuple_of_str


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
