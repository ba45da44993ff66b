"""Token alignment across items of one template (docs/method.md §3, "Aggregation").

Items of one template share their prefix and suffix tokens and differ in the entity span. An item
whose ``Example.template`` and ``entity`` are known is split by character offsets (every token that
overlaps the entity belongs to it); items without them are split by the longest token prefix and
suffix shared by all untemplated items. Every item of a group must then carry exactly the group's
prefix and suffix tokens, or an :class:`AlignmentError` names it.

Two maps are built from the split:

- **counterfactual**: position t of item i -> a position of item j (prefix to prefix, suffix to
  suffix, entity right-aligned; entity tokens of i beyond j's entity length map to j's first entity
  token, as in the paper's code);
- **canonical**: position t of item i -> a slot of the canonical template (prefix, ``E`` entity
  slots right-aligned, suffix). Entity tokens beyond the ``E`` slots are added into the first slot,
  so a canonical template's scores always sum to the item's total.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from extractive_lens.data import Example


class AlignmentError(ValueError):
    """Items whose tokens cannot be aligned with the other items of their template."""


@dataclass(frozen=True)
class Group:
    """Items sharing one template, split into prefix / entity / suffix tokens."""

    template: str | None
    items: tuple[int, ...]
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    entity_lengths: tuple[int, ...]  # aligned with ``items``

    def entity_length(self, item: int) -> int:
        return self.entity_lengths[self.items.index(item)]


@dataclass(frozen=True)
class Alignment:
    """The template groups of a list of items."""

    groups: tuple[Group, ...]
    group_of: tuple[int, ...]  # item -> index into groups

    def group(self, item: int) -> Group:
        return self.groups[self.group_of[item]]

    def counterfactual_positions(self, item: int, cf: int, length: int) -> Tensor:
        """For each position of ``item`` (``length`` of them), the aligned position in ``cf``."""
        g = self.group(item)
        if self.group_of[cf] != self.group_of[item]:
            raise AlignmentError(f"items {item} and {cf} have different templates")
        e_i, e_j = g.entity_length(item), g.entity_length(cf)
        if e_i and not e_j:
            raise AlignmentError(f"counterfactual item {cf} has no entity tokens to align with")
        return _moved(length, len(g.prefix), e_i, e_j).clone()

    def canonical_positions(self, item: int, length: int, slots: int) -> Tensor:
        """For each position of ``item``, its slot in a canonical template with ``slots``
        entity slots (entity tokens beyond them go to the first slot)."""
        g = self.group(item)
        e = g.entity_length(item)
        if e and not slots:
            raise AlignmentError(f"item {item} has entity tokens but the canonical template none")
        return _moved(length, len(g.prefix), e, slots).clone()


@functools.lru_cache(maxsize=4096)  # a few shapes repeat across every item and pair
def _moved(length: int, prefix: int, entity: int, other: int) -> Tensor:
    """Positions ``0..length-1`` of a prompt whose entity spans ``entity`` tokens after
    ``prefix``, in a prompt of the same template whose entity spans ``other``: the prefix stays,
    entity tokens align right (extra ones go to the first entity slot), the suffix shifts.
    Cached (the same few shapes recur for every pair); callers get a copy."""
    t = torch.arange(length)
    in_entity = torch.clamp(t + other - entity, min=prefix)
    after = t - entity + other
    return torch.where(t < prefix, t, torch.where(t < prefix + entity, in_entity, after))


def _entity_split(tokenizer: Any, ex: Example, ids: list[int]) -> tuple[int, int] | None:
    """(first entity token, one past the last) by character offsets, or None if unavailable."""
    if ex.template is None or ex.entity is None or not getattr(tokenizer, "is_fast", False):
        return None
    enc = tokenizer(ex.prompt, add_special_tokens=False, return_offsets_mapping=True)
    plain, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    shift = len(ids) - len(plain)
    if shift < 0 or ids[shift:] != plain:  # special tokens other than a leading BOS
        return None
    start = ex.template.index("{}")
    stop = start + len(ex.entity)
    inside = [k for k, (a, b) in enumerate(offsets) if a < stop and b > start and b > a]
    if not inside:
        before = sum(1 for a, b in offsets if b <= start)
        return shift + before, shift + before
    return shift + inside[0], shift + inside[-1] + 1


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(map(len, seqs))
    for k in range(n):
        if any(s[k] != seqs[0][k] for s in seqs):
            return k
    return n


def align(tokenizer: Any, examples: Sequence[Example], ids: Sequence[list[int]]) -> Alignment:
    """Group items by template and split each into prefix / entity / suffix tokens.

    Raises:
        AlignmentError: naming every item whose prefix or suffix tokens differ from its group's.
    """
    keys: dict[str | None, list[int]] = {}
    for i, ex in enumerate(examples):
        keys.setdefault(ex.template, []).append(i)
    groups, group_of = [], [0] * len(examples)
    problems = []
    for gi, (template, items) in enumerate(keys.items()):
        splits = {i: _entity_split(tokenizer, examples[i], ids[i]) for i in items}
        if template is None or any(s is None for s in splits.values()):
            seqs = [ids[i] for i in items]
            p = _common_prefix(seqs)
            s = _common_prefix([q[p:][::-1] for q in seqs])
            splits = {i: (p, len(ids[i]) - s) for i in items}
        first = items[0]
        a0, b0 = splits[first]
        prefix, suffix = tuple(ids[first][:a0]), tuple(ids[first][b0:])
        for i in items:
            a, b = splits[i]
            if tuple(ids[i][:a]) != prefix or tuple(ids[i][b:]) != suffix:
                problems.append(
                    f"item {i} ({examples[i].prompt!r}): tokens around the entity "
                    f"{examples[i].entity!r} differ from those of item {first} "
                    f"({examples[first].prompt!r})"
                )
        lengths = tuple(b - a for a, b in (splits[i] for i in items))
        groups.append(Group(template, tuple(items), prefix, suffix, lengths))
        for i in items:
            group_of[i] = gi
    if problems:
        raise AlignmentError(
            "cannot token-align these items with their template (a token straddles the entity "
            "boundary?):\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return Alignment(tuple(groups), tuple(group_of))


def canonical_layout(
    tokenizer: Any,
    alignment: Alignment,
    template: str | None = None,
    prepend_bos: bool | None = None,
) -> tuple[int, tuple[str, ...]]:
    """Number of entity slots and the position labels of the canonical template.

    With ``template`` (a prompt with placeholder words in the entity's place, e.g.
    ``"The people in the city X Y is from speak"``) its tokens are the labels and its middle tokens
    the slots; it must share the items' prefix and suffix. Without it, there are as many slots as
    the longest entity has tokens, labelled ``X``, ``Y``, ``Z`` (or ``X1``, ``X2``, ...).
    """
    from extractive_lens.metrics import prompt_ids

    if len(alignment.groups) != 1:
        names = [g.template for g in alignment.groups]
        raise AlignmentError(
            f"canonical positions need items of one template; these items have {len(names)}: "
            f"{names}. Score each template separately."
        )
    g = alignment.groups[0]
    decode = [tokenizer.decode([t]) for t in g.prefix], [tokenizer.decode([t]) for t in g.suffix]
    if template is not None:
        ids = prompt_ids(tokenizer, template, prepend_bos)
        p, s = len(g.prefix), len(g.suffix)
        if len(ids) < p + s or tuple(ids[:p]) != g.prefix or tuple(ids[len(ids) - s :]) != g.suffix:
            raise AlignmentError(
                f"canonical template {template!r} does not share the items' prefix "
                f"{decode[0]} and suffix {decode[1]} tokens"
            )
        return len(ids) - p - s, tuple(tokenizer.decode([t]) for t in ids)
    slots = max(g.entity_lengths)
    names = ["X", "Y", "Z"][:slots] if slots <= 3 else [f"X{k + 1}" for k in range(slots)]
    return slots, (*decode[0], *(" " + n for n in names), *decode[1])


def sample_counterfactuals(
    alignment: Alignment, examples: Sequence[Example], k: int, seed: int
) -> Tensor:
    """``[item, k]`` indices of counterfactual items, drawn with replacement (deterministic for
    ``seed``): same template, different prompt and different answer.

    Raises:
        AlignmentError: naming the items that have no possible counterfactual.
    """
    gen = torch.Generator().manual_seed(seed)
    out = torch.zeros(len(examples), k, dtype=torch.long)
    lonely = []
    for i, ex in enumerate(examples):
        pool = [
            j
            for j in alignment.group(i).items
            if examples[j].prompt != ex.prompt and examples[j].answer != ex.answer
        ]
        if not pool:
            lonely.append(f"item {i} ({ex.prompt!r} -> {ex.answer!r})")
            continue
        out[i] = torch.tensor(pool)[torch.randint(len(pool), (k,), generator=gen)]
    if lonely:
        raise AlignmentError(
            "no counterfactual (same template, different prompt and answer) exists for:\n"
            + "\n".join(f"  - {x}" for x in lonely)
        )
    return out
