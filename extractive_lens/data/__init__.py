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

User datasets are JSON Lines files (:func:`load_dataset_file`, :func:`save_dataset_file`; the
schema is in :mod:`extractive_lens.data.jsonl`).

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

Modules: :mod:`.types` (the records), :mod:`.words` (the fixed word lists), :mod:`.builtins`
(first and second hop, :func:`get_dataset`), :mod:`.daxwug`, :mod:`.controls` (control
pairings), :mod:`.validation` (checks for a tokenizer), :mod:`.jsonl` (files).

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

from extractive_lens.data.builtins import (
    DATASETS,
    FIRST_HOP_FACT,
    FIRST_HOP_IMPLICATION,
    FIRST_HOP_KNOWN_HOP,
    FIRST_HOP_PARAPHRASES,
    SECOND_HOP_FACT,
    SECOND_HOP_IMPLICATION,
    SECOND_HOP_KNOWN_HOP,
    SECOND_HOP_PARAPHRASES,
    first_hop,
    get_dataset,
    second_hop,
)
from extractive_lens.data.controls import (
    CONTROL_SHIFT,
    control_shift,
    control_split,
    deranged_control,
    grouped_control,
    with_control,
)
from extractive_lens.data.daxwug import (
    DAX,
    DAXWUG_PROMPTS,
    N_DAXWUG_TEST,
    WUG,
    ZONG,
    daxwug,
    daxwug_names,
)
from extractive_lens.data.jsonl import load_dataset_file, save_dataset_file
from extractive_lens.data.types import CONTROL, FACTS, IMPLICATIONS, Example, OCRDataset, Split
from extractive_lens.data.validation import first_token_ids, validate
from extractive_lens.data.words import (
    ANIMALS,
    CITIES,
    DAXWUG_SURNAMES,
    DAXWUG_TEST_FIRST_NAMES,
    DAXWUG_TRAIN_FIRST_NAMES,
    PEOPLE,
    City,
    RealCity,
)

__all__ = [
    "ANIMALS",
    "CITIES",
    "CONTROL",
    "CONTROL_SHIFT",
    "DATASETS",
    "DAX",
    "DAXWUG_PROMPTS",
    "DAXWUG_SURNAMES",
    "DAXWUG_TEST_FIRST_NAMES",
    "DAXWUG_TRAIN_FIRST_NAMES",
    "FACTS",
    "FIRST_HOP_FACT",
    "FIRST_HOP_IMPLICATION",
    "FIRST_HOP_KNOWN_HOP",
    "FIRST_HOP_PARAPHRASES",
    "IMPLICATIONS",
    "N_DAXWUG_TEST",
    "PEOPLE",
    "SECOND_HOP_FACT",
    "SECOND_HOP_IMPLICATION",
    "SECOND_HOP_KNOWN_HOP",
    "SECOND_HOP_PARAPHRASES",
    "WUG",
    "ZONG",
    "City",
    "RealCity",
    "Example",
    "OCRDataset",
    "Split",
    "control_shift",
    "control_split",
    "daxwug",
    "daxwug_names",
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
