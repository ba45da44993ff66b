"""Integrated informative scores: the first-order score averaged along the path theta + alpha Delta.

The informative score I_C = <grad_{W_C} R(theta), Delta W_C> is the first term of
R(theta + Delta) - R(theta). Along the straight path the change is exact:

    R(theta + Delta) - R(theta) = integral_0^1 g(alpha) d alpha,
    g(alpha) = <grad R(theta + alpha Delta), Delta>,

and g splits over components and positions exactly as the first-order score does (the same linear
maps, inputs and output gradients, taken at theta + alpha Delta instead of theta). The
**integrated informative score** replaces g by a quadrature sum_k w_k g(alpha_k): one informative
pass (forward + backward) at each of m nodes alpha_k in (0, 1), each giving the full per-component
and per-position split, then weighted and added. It is the weight-space analogue of integrated
gradients, for a finetuning delta. Summed over components (and the parameters no component owns,
reported in ``coverage``) it equals R(theta + Delta) - R(theta) up to the quadrature error:

- ``rule="gauss-legendre"`` (default): nodes and weights of the m-point Gauss-Legendre rule on
  [0, 1], exact for polynomials of degree 2m - 1; error
  |E| <= (m!)^4 / ((2m + 1) ((2m)!)^3) * max |g^(2m)|, i.e. it falls geometrically with m for a
  smooth path;
- ``rule="midpoint"``: alpha_k = (k - 1/2) / m, w_k = 1/m; error |E| <= max |g''| / (24 m^2).

m = 1 with the midpoint rule is the score at theta + Delta/2; the first-order score is g(0).
``ComponentScores.integration`` records the rule, nodes, weights and the exact change per item
(two extra forwards), so the quadrature residual of every result is known, not assumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from extractive_lens.delta import WeightDelta

RULES = ("gauss-legendre", "midpoint")


@dataclass(frozen=True)
class Integration:
    """How an integrated informative score was computed, and how exact it is.

    Attributes:
        rule: ``"gauss-legendre"`` or ``"midpoint"``.
        nodes: the alphas in (0, 1) at which the informative pass ran.
        weights: their quadrature weights (sum 1).
        exact_change: ``[example]`` R(theta + Delta) - R(theta) from two plain forwards.
    """

    rule: str
    nodes: tuple[float, ...]
    weights: tuple[float, ...]
    exact_change: Float[Tensor, " example"]

    @property
    def steps(self) -> int:
        return len(self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "nodes": list(self.nodes),
            "weights": list(self.weights),
            "exact_change": self.exact_change.tolist(),
        }


def quadrature(steps: int, rule: str = "gauss-legendre") -> tuple[list[float], list[float]]:
    """Nodes in (0, 1) and weights (summing to 1) of an m-point rule on [0, 1]."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if rule == "midpoint":
        return [(k + 0.5) / steps for k in range(steps)], [1.0 / steps] * steps
    if rule == "gauss-legendre":
        import numpy as np

        x, w = np.polynomial.legendre.leggauss(steps)  # on [-1, 1], weights sum to 2
        return ((x + 1) / 2).tolist(), (w / 2).tolist()
    raise ValueError(f"unknown quadrature rule {rule!r}; choose from {RULES}")


def integrated(
    one_pass: Callable[[], Any],
    model: Any,
    delta: Mapping[str, Tensor],
    exact_change: Callable[[], Tensor],
    steps: int,
    rule: str = "gauss-legendre",
) -> Any:
    """Run ``one_pass`` (an informative ``ComponentScores`` at the model's current weights, for
    ``delta``) at theta + alpha_k Delta for every node and return the weighted sum, with
    :class:`Integration` attached and the coverage's uncovered term integrated the same way."""
    nodes, weights = quadrature(steps, rule)
    wd = delta if isinstance(delta, WeightDelta) else WeightDelta(dict(delta))
    total: dict[str, Tensor | None] = {}
    uncovered = 0.0
    first = None
    for alpha, weight in zip(nodes, weights, strict=True):
        with wd.applied(model, scale=alpha):
            s = one_pass()
        first = first or s
        for key, value in s._tensors().items():
            if value is not None:
                total[key] = total.get(key, 0) + weight * value
            else:
                total[key] = None
        if s.coverage is not None and s.coverage.uncovered_informative is not None:
            uncovered += weight * s.coverage.uncovered_informative
    coverage = first.coverage
    if coverage is not None and coverage.uncovered_informative is not None:
        coverage = dataclasses.replace(coverage, uncovered_informative=uncovered)
    info = Integration(rule, tuple(nodes), tuple(weights), exact_change().detach().cpu())
    return dataclasses.replace(
        first,
        mlp=total["mlp"],
        heads=total["heads"],
        kv_heads=total["kv_heads"],
        coverage=coverage,
        integration=info,
    )


def exact_change_fn(
    model: Any,
    delta: Mapping[str, Tensor],
    examples: Sequence[Any],
    options: Sequence[str],
    batch_size: int = 32,
    prepend_bos: bool | None = None,
) -> Callable[[], Tensor]:
    """A function returning R(theta + Delta) - R(theta) per example (two plain forwards)."""
    from extractive_lens.data import first_token_ids
    from extractive_lens.metrics import answer_index, as_examples, encode
    from extractive_lens.scores.passes import acc, target_forward

    wd = delta if isinstance(delta, WeightDelta) else WeightDelta(dict(delta))
    tok, exs = model.tokenizer, as_examples(examples)
    ids, answers = torch.tensor(first_token_ids(tok, options)), answer_index(exs, options)

    def target() -> Tensor:
        out = []
        for start in range(0, len(exs), batch_size):
            rows = slice(start, start + batch_size)
            batch = encode(tok, exs[rows], with_answers=False, prepend_bos=prepend_bos)
            out.append(acc(target_forward(model, batch, answers[rows], ids)))
        return torch.cat(out)

    def run() -> Tensor:
        with torch.no_grad():
            before = target()
            with wd.applied(model) if len(wd) else contextlib.nullcontext():
                after = target()
        return after - before

    return run
