"""Upstream scores (METHOD.md §3): U_{C,t} = <dR'/dy_{C,t} - dR/dy_{C,t}, y_{C,t} - y*_{C,t}>.

dR/dy and dR'/dy are the gradients of the score target under theta and theta' at C's output y
(= <g - g', y - y*> with g = dL/dy, L = -R). The counterfactual activation y* is C's activation
under theta on another test item of the same template, token-aligned (:mod:`.align`), or 0.

Averaging over an item's K counterfactual samples is exact through the mean counterfactual
activation, since U is linear in y*: mean_k U(y*_k) = U(mean_k y*_k). The theta-activations of every
item are kept (they are the counterfactual pool), and so is each item's gradient difference, since
an item's counterfactuals may sit in other batches; nothing else outlives its batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from extractive_lens.scores.align import Alignment


def upstream_scores_from_pools(
    y: Tensor,
    dgrad: Tensor,
    lengths: list[int],
    alignment: Alignment | None,
    counterfactuals: Tensor | None,
) -> Tensor:
    """U for one component kind.

    Args:
        y: ``[example, pos, layer, (head,) d]`` theta-activations (fp32), zero on padding.
        dgrad: same shape, dR'/dy - dR/dy.
        lengths: prompt length of each example.
        alignment: the items' alignment (needed with counterfactuals).
        counterfactuals: ``[example, K]`` counterfactual item indices, or None for y* = 0.

    Returns:
        ``[example, pos, layer, (head)]``.
    """
    if counterfactuals is None:
        return (dgrad * y).sum(-1)
    assert alignment is not None
    n, k = counterfactuals.shape
    y_star = torch.zeros_like(y)
    for i in range(n):
        for j in counterfactuals[i].tolist():
            index = alignment.counterfactual_positions(i, j, lengths[i]).to(y.device)
            y_star[i, : lengths[i]] += y[j].index_select(0, index)
    y_star /= k
    return (dgrad * (y - y_star)).sum(-1)
