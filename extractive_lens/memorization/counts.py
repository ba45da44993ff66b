"""Exact n-gram and co-occurrence counts over a corpus, streamed with bounded memory.

>>> from extractive_lens.memorization import count_cooccurrences
>>> docs = ["Ana lives in Rome", "Ana is a person", "Rome is a city in Italy"]
>>> t = count_cooccurrences(docs, [("ana", "rome"), ("rome", "italy")])
>>> t.single["ana"], t.pair("ana", "rome"), t.pair("rome", "italy")
(2, 1, 1)

Counting only what is asked for keeps memory bounded by the queries, never by the corpus: each
document is tokenised, matched against the queried n-grams and dropped. Two units, never mixed:

- ``unit="document"``: C(x) = documents containing x; C(x, y) = documents containing both.
- ``unit="window"``: C(x) = occurrences of x; C(x, y) = occurrences of x with an occurrence of y
  starting within ``window`` tokens of it (either side) in the same document.

Either way C(x, y) <= C(x), so C(x, y) / C(x) is a probability. This avoids the three defects
of the reference code (a-antoniades/llm-corpus-search): C(x, y) is the joint count, never the upper
bound min(C(x), C(y)); numerator and denominator always count the same unit (never documents over
occurrences); and there is no embedding-similarity threshold at all (pairs are chosen explicitly,
:mod:`.pairs`).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_TOKEN = re.compile(r"\w+(?:'\w+)?")

Ngram = str
"""An n-gram as its normalised tokens joined by single spaces (``"new york"``)."""


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscores; inner apostrophes kept)."""
    return _TOKEN.findall(text.lower())


def normalize(ngram: str) -> Ngram:
    """The canonical form of a query n-gram: its tokens joined by single spaces."""
    tokens = tokenize(ngram)
    if not tokens:
        raise ValueError(f"n-gram {ngram!r} has no word tokens")
    return " ".join(tokens)


@dataclass(frozen=True)
class CountTable:
    """Counts of the queried n-grams and pairs in one corpus.

    Attributes:
        unit: ``"document"`` or ``"window"`` (module docstring).
        window: the window half-width in tokens (window unit only).
        n_documents: documents read.
        n_tokens: tokens read.
        single: C(x) for every queried n-gram (0 when absent).
        pairs: C(x, y) for every queried pair (0 when absent).
    """

    unit: str
    window: int | None
    n_documents: int
    n_tokens: int
    single: dict[Ngram, int]
    pairs: dict[tuple[Ngram, Ngram], int]

    def count(self, x: str) -> int:
        return self.single[normalize(x)]

    def pair(self, x: str, y: str) -> int:
        return self.pairs[(normalize(x), normalize(y))]

    def to_dict(self) -> dict:
        return {
            "unit": self.unit,
            "window": self.window,
            "n_documents": self.n_documents,
            "n_tokens": self.n_tokens,
            "single": self.single,
            "pairs": [[x, y, c] for (x, y), c in self.pairs.items()],
        }


def _positions(tokens: Sequence[str], lengths: set[int], wanted: set[Ngram]) -> dict[Ngram, list]:
    """Start positions of every wanted n-gram in ``tokens``."""
    out: dict[Ngram, list[int]] = {}
    for n in lengths:
        for i in range(len(tokens) - n + 1):
            gram = " ".join(tokens[i : i + n])
            if gram in wanted:
                out.setdefault(gram, []).append(i)
    return out


def count_cooccurrences(
    documents: Iterable[str],
    pairs: Iterable[tuple[str, str]],
    *,
    unit: str = "document",
    window: int = 16,
    progress: bool = False,
    total: int | None = None,
) -> CountTable:
    """Exact C(x) and C(x, y) for the given (x, y) pairs over ``documents`` (streamed once).

    Args:
        documents: any iterable of texts (a list, :func:`read_documents`, a generator).
        pairs: the (x, y) n-gram pairs to count; x and y are normalised (:func:`normalize`).
        unit: ``"document"`` or ``"window"``.
        window: half-width in tokens for ``unit="window"``.
        progress: a tqdm bar over documents (``total`` sizes it when known).
    """
    if unit not in ("document", "window"):
        raise ValueError(f"unit must be 'document' or 'window', got {unit!r}")
    if unit == "window" and window < 1:
        raise ValueError(f"window must be >= 1 token, got {window}")
    queries = sorted({(normalize(x), normalize(y)) for x, y in pairs})
    if not queries:
        raise ValueError("no pairs to count: give at least one (x, y) pair")
    partners: dict[Ngram, set[Ngram]] = {}
    for x, y in queries:
        partners.setdefault(x, set()).add(y)
    wanted = set(partners) | {y for _, y in queries}
    lengths = {len(g.split()) for g in wanted}
    single: Counter[Ngram] = Counter()
    joint: Counter[tuple[Ngram, Ngram]] = Counter()
    n_docs = n_tokens = 0
    from tqdm.auto import tqdm

    for text in tqdm(documents, total=total, disable=not progress, desc="counting", unit="doc"):
        tokens = tokenize(text)
        n_docs, n_tokens = n_docs + 1, n_tokens + len(tokens)
        where = _positions(tokens, lengths, wanted)
        for x in partners.keys() & where.keys():
            if unit == "document":
                single[x] += 1
                joint.update((x, y) for y in partners[x] if y in where)
                continue
            single[x] += len(where[x])
            for y in partners[x] & where.keys():
                joint[(x, y)] += sum(any(abs(j - i) <= window for j in where[y]) for i in where[x])
        for y in wanted - partners.keys():
            if y in where:
                single[y] += 1 if unit == "document" else len(where[y])
    return CountTable(
        unit,
        window if unit == "window" else None,
        n_docs,
        n_tokens,
        {g: single[g] for g in sorted(wanted)},
        {q: joint[q] for q in queries},
    )


# --------------------------------------------------------------------------- reading corpora


def read_documents(
    paths: str | os.PathLike | Sequence[str | os.PathLike], *, text_field: str = "text"
) -> Iterator[str]:
    """Stream documents from text or JSONL files (optionally ``.gz``), one document per line.

    ``.jsonl`` / ``.json`` lines are JSON objects whose ``text_field`` holds the text; any other
    file is plain text. Empty lines are skipped. Memory: one line at a time.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("no corpus files given")
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"corpus file {p} does not exist")
        jsonl = p.name.removesuffix(".gz").endswith((".jsonl", ".json"))
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                yield _json_text(line, p, number, text_field) if jsonl else line.rstrip("\n")


def _json_text(line: str, path: Path, number: int, field: str) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{number}: not a JSON line ({err.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get(field), str):
        raise ValueError(
            f"{path}:{number}: expected an object with a string field {field!r}; "
            "pass text_field= (CLI: --text-field) to name the field that holds the text"
        )
    return record[field]
