"""The design of weight grafting (docs/method.md §5.5): the logical roles, the trainings, the
rows of the table, the paper's numbers, and which dataset split plays each role.

A *logical role* names what a split is in the experiment (``facts`` F, ``implications`` I(F),
``counterfactual_facts`` F', ``counterfactual_implications`` I(F'), ``wug``, the control of
I(F')); a :class:`GraftDesign` maps each role to a split of the dataset, so the paper's design
(training names) and the held-out variant run the same code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from extractive_lens.data import FACTS, IMPLICATIONS, OCRDataset, Split, deranged_control
from extractive_lens.experiments.common import require_splits

# Logical roles of the evaluated splits (keys of ``GraftResult.ranks[row]``).
CF_FACTS = "counterfactual_facts"
CF_IMPLICATIONS = "counterfactual_implications"
CF_CONTROL = "counterfactual_control"
WUG = "wug"

#: Column labels of the logical roles.
COLUMNS = {
    CF_IMPLICATIONS: "I(F')",
    IMPLICATIONS: "I(F)",
    CF_FACTS: "F'",
    FACTS: "F",
    WUG: "wug",
    CF_CONTROL: "control I(F')",
}

#: Rows: key -> (label, the trainings whose deltas are applied, in order).
ROWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "theta": ("theta", ()),
    "counterfactual": ("theta + Delta_F'", ("F'",)),
    "graft": ("+ Delta_{F,I(F)} (graft)", ("F'", "F,I(F)")),
    "control": ("+ Delta_{I(F)} (control)", ("F'", "I(F)")),
}

#: The paper's OLMo-7B table (docs/method.md §5.5): row -> column -> mean rank.
PAPER: dict[str, dict[str, float]] = {
    "counterfactual": {CF_IMPLICATIONS: 9.12, IMPLICATIONS: 8.55, CF_FACTS: 0.00},
    "graft": {CF_IMPLICATIONS: 1.13, IMPLICATIONS: 3.31, CF_FACTS: 0.08},
    "control": {CF_IMPLICATIONS: 8.42, IMPLICATIONS: 0.43, CF_FACTS: 0.32},
}

#: The trainings: name -> (logical role of its training split, the training it starts from).
TRAININGS: dict[str, tuple[str, str | None]] = {
    "F": (FACTS, None),
    "F,I(F)": (IMPLICATIONS, "F"),
    "F'": (CF_FACTS, None),
    "I(F)": (IMPLICATIONS, None),
}


@dataclass(frozen=True)
class GraftDesign:
    """Which dataset split plays each logical role.

    Attributes:
        name: ``"paper"`` or ``"heldout_variant"``.
        splits: logical role (keys of :data:`COLUMNS`) -> split name in the dataset.
    """

    name: str
    splits: dict[str, str]


PAPER_DESIGN = GraftDesign(
    "paper",
    {
        FACTS: "train_facts",
        IMPLICATIONS: "train_implications",
        CF_FACTS: "train_facts_2",
        CF_IMPLICATIONS: "train_implications_2",
        WUG: "wug",
    },
)
HELDOUT_VARIANT = GraftDesign(
    "heldout_variant",
    {
        FACTS: FACTS,
        IMPLICATIONS: IMPLICATIONS,
        CF_FACTS: CF_FACTS,
        CF_IMPLICATIONS: CF_IMPLICATIONS,
        CF_CONTROL: CF_CONTROL,
    },
)
DESIGNS = {d.name: d for d in (PAPER_DESIGN, HELDOUT_VARIANT)}


def logical_view(ds: OCRDataset, design: GraftDesign) -> OCRDataset:
    """A dataset whose splits are named by logical role (``facts``, ``counterfactual_facts``,
    ...), each holding the design's split of ``ds``."""
    rec = {role: ds.split(name) for role, name in design.splits.items()}
    extra = tuple(
        Split(role, r.examples, r.options, r.description)
        for role, r in rec.items()
        if role not in (FACTS, IMPLICATIONS)
    )
    return OCRDataset(
        name=ds.name,
        facts=rec[FACTS].examples,
        implications=rec[IMPLICATIONS].examples,
        fact_options=rec[FACTS].options,
        implication_options=rec[IMPLICATIONS].options,
        seed=ds.seed,
        extra=extra,
    )


def with_counterfactual_control(ds: OCRDataset) -> OCRDataset:
    """``ds`` plus the deranged-pairing control of the counterfactual implications."""
    if CF_CONTROL in ds.splits():
        return ds
    require_splits(ds, (CF_IMPLICATIONS,), "weight_grafting_heldout_variant")
    cf = ds.split(CF_IMPLICATIONS)
    control = Split(
        CF_CONTROL,
        deranged_control(cf.examples),
        cf.options,
        "counterfactual implications with deranged answers",
    )
    return dataclasses.replace(ds, extra=(*ds.extra, control))


def changed_items(view: OCRDataset, design: GraftDesign) -> tuple[int, ...]:
    """Indices of the items whose I(F') answer differs from their I(F) answer (where memorising
    I(F) cannot help); checks that F', I(F') and I(F) pair item by item."""
    impl, cf = view.split(IMPLICATIONS).examples, view.split(CF_IMPLICATIONS).examples
    if len(cf) != len(impl) or len(view.split(CF_FACTS).examples) != len(impl):
        raise ValueError(
            f"weight grafting: {design.splits[CF_IMPLICATIONS]} and {design.splits[CF_FACTS]} "
            f"must pair item by item with {design.splits[IMPLICATIONS]}"
        )
    changed = tuple(
        i for i, (a, b) in enumerate(zip(impl, cf, strict=True)) if a.answer != b.answer
    )
    if not changed:
        raise ValueError("weight grafting: the counterfactual draw changes no answer")
    return changed
