"""Task-gram probabilities and their rank correlation with a model (Wang et al., arXiv 2407.14985).

For an item with input x and output y, the task-gram LM scores P_tg(y | x) = C(x, y) / C(x) from
corpus counts (:mod:`.counts`) over *aligned* (input n-gram, output n-gram) pairs; an item with
several pairs gets the mean of their log-probabilities (the reference code's aggregate).
**Distributional memorization** is the Spearman correlation over items between the model's
log-probability of the output and log P_tg; the Kendall-tau distance (1 - tau) / 2 is the
reference's "distributional generalization" side.

Pairs (:func:`item_pairs`): ``"entity"`` pairs the item's entity (the span that varies across a
template's items, e.g. the person) with its answer, the natural alignment in the synthetic worlds;
``"ngrams"`` pairs every prompt n-gram that is not a template word (a word in every prompt of the
split) with the answer. The reference code instead keeps pairs whose embedding similarity passes a
threshold; no embedding model is available offline, and its threshold was on the wrong scale.

Zero counts: the reference code drops pairs with C(x, y) = 0, which silently removes every item
the corpus never linked (here: every OCR implication). We keep them with Lidstone smoothing over
the ``n_outcomes`` possible answers, P = (C(x, y) + alpha) / (C(x) + alpha * n_outcomes);
``alpha = 0`` is the unsmoothed ratio (then log 0 = -inf, and such items are an error).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.memorization.counts import CountTable, normalize, tokenize
from extractive_lens.metrics import ExampleLike, as_examples, batches, encode, forward


def item_pairs(
    examples: Sequence[ExampleLike], mode: str = "entity", max_n: int = 2
) -> list[list[tuple[str, str]]]:
    """Each item's aligned (x, y) pairs: ``mode="entity"`` or ``"ngrams"`` (module docstring)."""
    examples = as_examples(examples)
    if mode == "entity":
        missing = [e.prompt for e in examples if not e.entity]
        if missing:
            raise ValueError(
                f"{len(missing)} items have no entity (e.g. {missing[0]!r}); use mode='ngrams' "
                "or give Example(entity=...)"
            )
        return [[(normalize(e.entity), normalize(e.answer))] for e in examples]
    if mode != "ngrams":
        raise ValueError(f"mode must be 'entity' or 'ngrams', got {mode!r}")
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    token_lists = [tokenize(e.prompt) for e in examples]
    template = set.intersection(*map(set, token_lists)) if len(examples) > 1 else set()
    out = []
    for e, tokens in zip(examples, token_lists, strict=True):
        grams = {
            " ".join(tokens[i : i + n])
            for n in range(1, max_n + 1)
            for i in range(len(tokens) - n + 1)
            if not set(tokens[i : i + n]) <= template
        }
        out.append([(g, normalize(e.answer)) for g in sorted(grams)])
    return out


def task_gram_logprob(
    table: CountTable,
    pairs: Sequence[Sequence[tuple[str, str]]],
    *,
    alpha: float = 1.0,
    n_outcomes: int = 1,
) -> Float[Tensor, " item"]:
    """Per item: the mean over its pairs of log P_tg(y | x) (Lidstone-smoothed, module doc)."""
    if alpha < 0 or n_outcomes < 1:
        raise ValueError("alpha must be >= 0 and n_outcomes >= 1")
    out = []
    for item in pairs:
        if not item:
            raise ValueError("an item has no (x, y) pairs to score")
        logs = []
        for x, y in item:
            num, den = table.pairs[(x, y)] + alpha, table.single[x] + alpha * n_outcomes
            if num == 0 or den == 0:
                raise ValueError(
                    f"P_tg({y!r} | {x!r}) = {table.pairs[(x, y)]}/{table.single[x]} has a zero; "
                    "use alpha > 0 (smoothing) to score unseen pairs"
                )
            logs.append(math.log(num) - math.log(den))
        out.append(sum(logs) / len(logs))
    return torch.tensor(out, dtype=torch.float64)


def answer_logprobs(
    model: TransformerBridge, examples: Sequence[ExampleLike], *, batch_size: int = 32
) -> Float[Tensor, " item"]:
    """log P_model(" " + answer | prompt), summed over the answer's tokens."""
    out = []
    with torch.no_grad():
        for chunk in batches(as_examples(examples), batch_size):
            batch = encode(model.tokenizer, chunk)
            logp = torch.log_softmax(forward(model, batch).double(), -1)
            labels = batch.labels.to(logp.device)
            mask = labels != -100
            picked = logp.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
            out.append((picked * mask).sum(1).cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class Correlation:
    """Rank correlations over items with percentile-bootstrap confidence intervals.

    ``nan`` when either side is constant (a rank correlation is undefined there).
    """

    n: int
    spearman: float
    spearman_ci: tuple[float, float]
    spearman_p: float
    kendall: float
    kendall_ci: tuple[float, float]
    kendall_p: float
    level: float

    @property
    def tau_distance(self) -> float:
        """Kendall-tau distance (1 - tau) / 2 (the reference's generalization measure)."""
        return (1 - self.kendall) / 2

    def to_dict(self) -> dict:
        return {**asdict(self), "tau_distance": self.tau_distance}


def rank_correlation(
    x: Sequence[float] | Tensor,
    y: Sequence[float] | Tensor,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Correlation:
    """Spearman rho and Kendall tau-b of ``x`` and ``y`` (scipy) with bootstrap CIs over items."""
    from scipy.stats import kendalltau, spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d and of equal length, got {x.shape} and {y.shape}")
    if len(x) < 3:
        raise ValueError(f"a rank correlation needs >= 3 items, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite (smooth zero counts with alpha > 0)")
    if not 0 < level < 1 or n_boot < 0:
        raise ValueError("level must be in (0, 1) and n_boot >= 0")
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant inputs: scipy warns and returns nan
        rho, rho_p = spearmanr(x, y)
        tau, tau_p = kendalltau(x, y)
        boots = [rng.integers(0, len(x), len(x)) for _ in range(n_boot)]
        rhos = [spearmanr(x[i], y[i])[0] for i in boots]
        taus = [kendalltau(x[i], y[i])[0] for i in boots]
    return Correlation(
        len(x),
        float(rho),
        _interval(rhos, level),
        float(rho_p),
        float(tau),
        _interval(taus, level),
        float(tau_p),
        level,
    )


def _interval(values: list[float], level: float) -> tuple[float, float]:
    finite = np.asarray([v for v in values if np.isfinite(v)])
    if len(finite) == 0:
        return (math.nan, math.nan)
    lo, hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))
