"""Distributional memorization against a pretraining corpus (Wang et al., arXiv 2407.14985).

:mod:`.counts` counts n-grams and co-occurrences exactly (streaming; text or JSONL files);
:mod:`.taskgram` turns counts into task-gram probabilities and correlates them with a model;
:mod:`.analysis` runs it over an OCR dataset before and after the OCR finetune
(:func:`memorization`).
"""

from extractive_lens.memorization.analysis import (
    DEFAULT_SPLITS,
    MemorizationResult,
    SplitItems,
    memorization,
)
from extractive_lens.memorization.counts import (
    CountTable,
    count_cooccurrences,
    normalize,
    read_documents,
    tokenize,
)
from extractive_lens.memorization.taskgram import (
    Correlation,
    answer_logprobs,
    item_pairs,
    rank_correlation,
    task_gram_logprob,
)

__all__ = [
    "DEFAULT_SPLITS",
    "Correlation",
    "CountTable",
    "MemorizationResult",
    "SplitItems",
    "answer_logprobs",
    "count_cooccurrences",
    "item_pairs",
    "memorization",
    "normalize",
    "rank_correlation",
    "read_documents",
    "task_gram_logprob",
    "tokenize",
]
