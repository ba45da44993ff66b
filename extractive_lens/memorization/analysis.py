"""Distributional memorization of an OCR dataset: does the model's confidence follow corpus counts?

>>> from extractive_lens.worlds import make_world, build_corpus
>>> from extractive_lens.memorization import memorization
>>> world = make_world()
>>> r = memorization(model, world.first_hop(), build_corpus(world))  # doctest: +SKIP

Per split (facts, implications, the deranged control, and the dataset's pre-check splits such as
``known_implications``) and per phase (``before`` the OCR finetune; ``after`` it when a delta is
given): each item's model log-probability of its answer, its aligned pairs' counts and task-gram
log-probability, and the Spearman / Kendall correlation over items with bootstrap CIs
(:mod:`.taskgram`). A row ``all`` pools the splits. In the synthetic worlds the counts are exact
and free, and implication pairs of held-out people have C(x, y) = 0 by construction.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import CONTROL, FACTS, IMPLICATIONS, OCRDataset
from extractive_lens.experiments.common import base_dict, markdown_table, save_result
from extractive_lens.memorization.counts import CountTable, count_cooccurrences
from extractive_lens.memorization.taskgram import (
    answer_logprobs,
    item_pairs,
    rank_correlation,
    task_gram_logprob,
)
from extractive_lens.models import model_identity

DEFAULT_SPLITS = (FACTS, IMPLICATIONS, CONTROL, "known_implications", "known_latent_implications")


@dataclass(frozen=True)
class SplitItems:
    """One split's items: pairs, counts, task-gram and model log-probabilities per phase."""

    name: str
    pairs: list[list[tuple[str, str]]]
    joint: list[float]
    """Mean C(x, y) over each item's pairs."""
    taskgram: list[float]
    """Per item mean log P_tg(y | x)."""
    model: dict[str, list[float]]
    """phase -> per item log P_model(answer | prompt)."""


@dataclass(frozen=True)
class MemorizationResult:
    """Counts, task-gram and model log-probabilities per split and phase, and their correlations."""

    model: dict[str, Any]
    dataset: str
    splits: tuple[SplitItems, ...]
    counts: CountTable
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def phases(self) -> list[str]:
        return list(self.splits[0].model)

    def correlation(self, split: str, phase: str) -> Any:
        """The :class:`~.taskgram.Correlation` of one split (or ``"all"``) in one phase."""
        chosen = self.splits if split == "all" else [s for s in self.splits if s.name == split]
        if not chosen:
            raise KeyError(f"no split {split!r}; have {[s.name for s in self.splits]}")
        x = [v for s in chosen for v in s.taskgram]
        y = [v for s in chosen for v in s.model[phase]]
        return rank_correlation(
            x, y, n_boot=self.config.get("n_boot", 1000), seed=self.config.get("seed", 0)
        )

    def table(self) -> list[dict[str, Any]]:
        """Per phase and split (then ``all``): counts, mean log-probs, correlations with CIs."""
        rows = []
        for phase in self.phases:
            for s in [*self.splits, None]:
                name = "all" if s is None else s.name
                items = self.splits if s is None else [s]
                joint = [v for it in items for v in it.joint]
                logp = [v for it in items for v in it.model[phase]]
                c = self.correlation(name, phase)
                rows.append(
                    {
                        "phase": phase,
                        "split": name,
                        "n": c.n,
                        "mean C(x,y)": sum(joint) / len(joint),
                        "nonzero": sum(v > 0 for v in joint) / len(joint),
                        "mean log p": sum(logp) / len(logp),
                        "spearman": c.spearman,
                        "spearman CI": _ci(c.spearman_ci),
                        "kendall": c.kendall,
                        "tau distance": c.tau_distance,
                    }
                )
        return rows

    def summary(self) -> dict[str, float]:
        return {
            f"spearman_{r['phase']}_{r['split']}": r["spearman"]
            for r in self.table()
            if isinstance(r["spearman"], float)
        }

    def markdown(self) -> str:
        return markdown_table(self.table())

    def figure(self) -> Any:
        """Task-gram vs model log-probability per item, one marker colour per split and phase."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for phase in self.phases:
            for s in self.splits:
                fig.add_scatter(
                    x=s.taskgram,
                    y=s.model[phase],
                    mode="markers",
                    name=f"{s.name} ({phase})",
                    marker={"symbol": "circle" if phase == "before" else "x"},
                )
        fig.update_layout(
            title=f"Distributional memorization: {self.model.get('name')} on {self.dataset}",
            xaxis_title="task-gram log P(y | x)",
            yaxis_title="model log P(answer | prompt)",
        )
        return fig

    def to_dict(self) -> dict[str, Any]:
        return {
            **base_dict("memorization", self),
            "dataset": self.dataset,
            "table": self.table(),
            "splits": [
                {
                    "name": s.name,
                    "pairs": s.pairs,
                    "joint": s.joint,
                    "taskgram": s.taskgram,
                    "model": s.model,
                }
                for s in self.splits
            ],
            "counts": self.counts.to_dict(),
        }

    def save(self, out_dir: str | Path, overwrite: bool = False) -> Path:
        """Write ``results.json`` and ``figure.html`` into a new directory."""
        return save_result(self, out_dir, overwrite=overwrite)


def _ci(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def memorization(
    model: TransformerBridge,
    dataset: OCRDataset,
    corpus: CountTable | Iterable[str] | Any,
    *,
    delta: Any = None,
    splits: Sequence[str] | None = None,
    pairs: str = "entity",
    unit: str = "document",
    window: int = 16,
    alpha: float = 1.0,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> MemorizationResult:
    """Distributional memorization of ``dataset``'s splits against ``corpus``.

    Args:
        model: the model at theta (weights restored on exit).
        dataset: the OCR dataset.
        corpus: a :class:`CountTable` already holding every pair, a worlds ``Corpus`` (its
            ``texts()``), or any iterable of document texts (e.g. :func:`read_documents`).
        delta: the OCR finetune's delta; adds the ``after`` phase.
        splits: which splits (default: those of :data:`DEFAULT_SPLITS` the dataset has).
        pairs: ``"entity"`` or ``"ngrams"`` (:func:`~.taskgram.item_pairs`).
        unit, window: the count unit (:func:`count_cooccurrences`).
        alpha: Lidstone smoothing of P_tg over the split's options.
        n_boot, seed: bootstrap resamples and their seed.
    """
    start = time.perf_counter()
    have = dataset.splits()
    names = [s for s in (splits or DEFAULT_SPLITS) if s in have]
    unknown = [s for s in (splits or ()) if s not in have]
    if unknown or not names:
        raise ValueError(
            f"dataset {dataset.name!r} lacks splits {unknown or splits}; has {list(have)}"
        )
    per_split = {n: item_pairs(have[n], pairs) for n in names}
    wanted = {p for items in per_split.values() for item in items for p in item}
    table = _table(corpus, wanted, unit, window, progress)
    out = []
    for n in names:
        logp = {"before": answer_logprobs(model, have[n]).tolist()}
        if delta is not None:
            with delta.applied(model):
                logp["after"] = answer_logprobs(model, have[n]).tolist()
        tg = task_gram_logprob(
            table, per_split[n], alpha=alpha, n_outcomes=len(dataset.options_for(n))
        )
        joint = [sum(table.pairs[p] for p in it) / len(it) for it in per_split[n]]
        out.append(SplitItems(n, per_split[n], joint, tg.tolist(), logp))
    config = {"pairs": pairs, "unit": unit, "window": window, "alpha": alpha}
    return MemorizationResult(
        model_identity(model),
        dataset.name,
        tuple(out),
        table,
        {**config, "n_boot": n_boot, "seed": seed, "splits": names},
        time.perf_counter() - start,
    )


def _table(corpus: Any, wanted: set, unit: str, window: int, progress: bool) -> CountTable:
    if isinstance(corpus, CountTable):
        missing = [p for p in wanted if p not in corpus.pairs]
        if missing:
            raise ValueError(
                f"the count table lacks {len(missing)} pairs (e.g. {missing[0]}); count them "
                "with count_cooccurrences or pass the corpus itself"
            )
        return corpus
    texts = corpus.texts() if hasattr(corpus, "texts") else corpus
    if isinstance(texts, str):
        raise ValueError("corpus is one string; pass a list of documents or read_documents(path)")
    return count_cooccurrences(texts, wanted, unit=unit, window=window, progress=progress)
