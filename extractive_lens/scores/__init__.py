"""Extractive scores (method §3): informative, downstream and upstream, per component and token.

>>> from extractive_lens.models import tiny_model
>>> from extractive_lens.data import first_hop
>>> from extractive_lens.delta import WeightDelta
>>> from extractive_lens.scores import extractive_scores
>>> model, data = tiny_model(), first_hop()
>>> delta = WeightDelta.zeros_like(model)
>>> s = extractive_scores(model, delta, data.implications[:4], data.implication_options,
...                       counterfactuals=2)
>>> s.informative.mlp.shape[2] == model.cfg.n_layers
True
>>> float(s.informative.total())
0.0

All three come from shared passes over batches of items, about 3 forwards + 2 backwards per batch
whatever the number of components or counterfactual samples (see :mod:`.engine`). Positive scores
help the correct answer: the target is R = logit(answer) - mean logit(options) at the last prompt
position (docs/method.md §1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.metrics import ExampleLike
from extractive_lens.scores.align import Alignment, AlignmentError
from extractive_lens.scores.engine import compute
from extractive_lens.scores.informative import Coverage
from extractive_lens.scores.integrated import Integration, exact_change_fn, integrated, quadrature
from extractive_lens.scores.result import CanonicalScores, ComponentScores, ExtractiveScores

__all__ = [
    "Alignment",
    "AlignmentError",
    "CanonicalScores",
    "ComponentScores",
    "Coverage",
    "ExtractiveScores",
    "Integration",
    "downstream_scores",
    "extractive_scores",
    "informative_scores",
    "quadrature",
    "upstream_scores",
]


def informative_scores(
    model: TransformerBridge,
    delta: Mapping[str, Tensor],
    examples: Sequence[ExampleLike],
    options: Sequence[str],
    *,
    batch_size: int = 32,
    paper_mlp: bool = False,
    template: str | None = None,
    prepend_bos: bool | None = None,
    steps: int | None = None,
    rule: str = "gauss-legendre",
) -> ComponentScores:
    """Informative scores I_{C,t}: how much giving only C its finetuned weights raises R.

    One forward+backward under theta per batch. ``.total()`` equals <grad R, delta> over the
    parameters the components own; ``.coverage`` reports the rest of the delta (embeddings,
    attention and final norms, the attention output bias) and its first-order effect.

    Args:
        model: the model at theta (weights are never changed).
        delta: theta' - theta, a ``WeightDelta`` or any mapping of parameter names to tensors.
        examples: ``Example``s or ``(prompt, answer)`` pairs.
        options: the option set R is measured against.
        batch_size: items per pass.
        paper_mlp: reproduce the published code's MLP score (W_out term twice, W_in/W_gate and
            the norm dropped). A reproduction aid: the default is the correct score.
        template: canonical template used by ``.canonical()`` (see :func:`extractive_scores`).
        prepend_bos: force a BOS token on or off (default: the tokenizer's convention).
        steps: None for the first-order score (gradients at theta); m for the integrated score,
            gradients averaged along theta + alpha Delta at m quadrature nodes (m informative
            passes plus two forwards; :mod:`.integrated`): its components sum to
            R(theta + Delta) - R(theta) up to the quadrature error, recorded in
            ``.integration``.
        rule: the quadrature rule with ``steps``: ``"gauss-legendre"`` or ``"midpoint"``.
    """

    def one_pass() -> ComponentScores:
        return compute(
            model,
            delta,
            examples,
            options,
            roles=("informative",),
            batch_size=batch_size,
            paper_mlp=paper_mlp,
            template=template,
            prepend_bos=prepend_bos,
        )["informative"]

    if steps is None:
        return one_pass()
    if paper_mlp:
        raise ValueError("steps (integrated scores) and paper_mlp cannot be combined")
    exact = exact_change_fn(model, delta, examples, options, batch_size, prepend_bos)
    return integrated(one_pass, model, delta, exact, steps, rule)


def downstream_scores(
    model: TransformerBridge,
    delta: Mapping[str, Tensor],
    examples: Sequence[ExampleLike],
    options: Sequence[str],
    *,
    batch_size: int = 32,
    template: str | None = None,
    prepend_bos: bool | None = None,
) -> ComponentScores:
    """Downstream ("strict") scores D_{C,t} = <dR/dy_C, y~_C - y_C>, y~_C = f_C(z'_C; W_C).

    Per batch: forward+backward under theta, forward under theta', forward under theta with every
    component's theta' inputs substituted at once. Arguments as :func:`informative_scores`.
    """
    return compute(
        model,
        delta,
        examples,
        options,
        roles=("downstream",),
        batch_size=batch_size,
        template=template,
        prepend_bos=prepend_bos,
    )["downstream"]


def upstream_scores(
    model: TransformerBridge,
    delta: Mapping[str, Tensor],
    examples: Sequence[ExampleLike],
    options: Sequence[str],
    *,
    counterfactuals: int | Tensor | Sequence[Sequence[int]] | None = 10,
    seed: int = 3,
    batch_size: int = 32,
    template: str | None = None,
    prepend_bos: bool | None = None,
) -> ComponentScores:
    """Upstream scores U_{C,t} = <dR'/dy_C - dR/dy_C, y_C - y*_C>.

    Args:
        counterfactuals: K, the number of counterfactual items drawn per item (same template,
            different prompt and answer; with replacement; deterministic for ``seed``), or an
            explicit ``[example, K]`` index table, or None / 0 for y* = 0.
        seed: seeds the counterfactual draw.

    Other arguments as :func:`informative_scores`. The result is the mean over the K samples.
    """
    return compute(
        model,
        delta,
        examples,
        options,
        roles=("upstream",),
        counterfactuals=counterfactuals,
        seed=seed,
        batch_size=batch_size,
        template=template,
        prepend_bos=prepend_bos,
    )["upstream"]


def extractive_scores(
    model: TransformerBridge,
    delta: Mapping[str, Tensor],
    examples: Sequence[ExampleLike],
    options: Sequence[str],
    *,
    counterfactuals: int | Tensor | Sequence[Sequence[int]] | None = 10,
    seed: int = 3,
    template: str | None = None,
    batch_size: int = 32,
    paper_mlp: bool = False,
    prepend_bos: bool | None = None,
    steps: int | None = None,
    rule: str = "gauss-legendre",
) -> ExtractiveScores:
    """All three scores from shared passes (about 3 forwards + 2 backwards per batch).

    Args:
        template: the canonical template for ``.canonical()``: a prompt with placeholder words
            in the entity's place, e.g. ``"The people in the city X Y is from speak"``; its tokens
            label the canonical positions. Default: the items' shared prefix and suffix around as
            many entity slots as the longest entity has tokens.

    Other arguments as :func:`informative_scores` (``steps``: integrated informative scores,
    m more passes) and :func:`upstream_scores`.
    """
    roles = (
        ("informative", "downstream", "upstream") if steps is None else ("downstream", "upstream")
    )
    out = compute(
        model,
        delta,
        examples,
        options,
        roles=roles,
        counterfactuals=counterfactuals,
        seed=seed,
        template=template,
        batch_size=batch_size,
        paper_mlp=paper_mlp,
        prepend_bos=prepend_bos,
    )
    if steps is not None:
        out["informative"] = informative_scores(
            model,
            delta,
            examples,
            options,
            batch_size=batch_size,
            paper_mlp=paper_mlp,
            template=template,
            prepend_bos=prepend_bos,
            steps=steps,
            rule=rule,
        )
    return ExtractiveScores(out["informative"], out["downstream"], out["upstream"])
