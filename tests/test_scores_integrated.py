"""Integrated informative scores (``steps=m``, :mod:`extractive_lens.scores.integrated`).

Against independent computations on a float64 tiny model with a delta on owned parameters only:
the components sum to R(theta + Delta) - R(theta) within the midpoint rule's error bound
max|g''| / (24 m^2) (g'' = R''' along the path, from finite differences of plain forwards), the
Gauss-Legendre sums converge as m grows, and each node's per-component split is the first-order
score at theta + alpha Delta.
"""

from __future__ import annotations

import pytest
import torch

from extractive_lens.delta import WeightDelta
from extractive_lens.models import tiny_model
from extractive_lens.scores import extractive_scores, informative_scores, quadrature
from tests.test_scores import EXAMPLES, OPTIONS, perturbed, random_delta, target


@pytest.fixture(scope="module")
def setup():
    model = tiny_model(
        "llama", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, seed=3, dtype=torch.float64
    )
    full = random_delta(model, seed=11, scale=0.01, dtype=torch.float64)
    owned = WeightDelta(
        {n: t for n, t in full.items() if "input_layernorm" not in n}, dtype=torch.float64
    )
    before = target(model)
    with perturbed(model, owned, 1.0):
        after = target(model)
    return model, owned, after - before


def _third_derivative_bound(model, delta) -> float:
    """max over alpha in [0, 1] of |d^3/d alpha^3 sum_i R_i(theta + alpha Delta)|."""
    h, n = 0.01, 101
    values = []
    for k in range(-2, n + 2):
        with perturbed(model, delta, k * h):
            values.append(float(target(model).sum()))
    r = torch.tensor(values, dtype=torch.float64)
    third = (r[4:] - 2 * r[3:-1] + 2 * r[1:-3] - r[:-4]) / (2 * h**3)  # central, O(h^2)
    return float(third.abs().max())


def test_quadrature_rules():
    for rule in ("gauss-legendre", "midpoint"):
        for m in (1, 3, 6):
            x, w = quadrature(m, rule)
            assert len(x) == m and all(0 < a < 1 for a in x)
            assert sum(w) == pytest.approx(1.0)
    x, w = quadrature(3)  # exact for degree 2m - 1 = 5
    assert sum(wi * xi**5 for xi, wi in zip(x, w, strict=True)) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="steps"):
        quadrature(0)
    with pytest.raises(ValueError, match="rule"):
        quadrature(2, "simpson")


def test_midpoint_sums_within_the_error_bound(setup):
    model, delta, exact = setup
    bound_r3 = _third_derivative_bound(model, delta)
    first_order = informative_scores(model, delta, EXAMPLES, OPTIONS)
    first_error = abs(float(first_order.total() - exact.sum()))
    errors = []
    for m in (1, 2, 4):
        s = informative_scores(model, delta, EXAMPLES, OPTIONS, steps=m, rule="midpoint")
        torch.testing.assert_close(s.integration.exact_change, exact)
        errors.append(abs(float(s.total() - exact.sum())))
        assert errors[-1] <= 1.05 * bound_r3 / (24 * m**2) + 1e-10
    assert errors[2] < errors[0] / 8  # O(1/m^2)
    assert first_error > 5 * errors[2]  # the path matters: first order is visibly off here


def test_gauss_legendre_converges(setup):
    model, delta, exact = setup
    errors = []
    for m in (1, 2, 4):
        s = informative_scores(model, delta, EXAMPLES, OPTIONS, steps=m)
        errors.append(float((s.total(per_example=True) - exact).abs().max()))
        assert s.integration.steps == m and s.integration.rule == "gauss-legendre"
    assert errors[1] < errors[0] / 4 and errors[2] < errors[1] / 4
    assert errors[2] < 1e-4 * float(exact.abs().max())  # 4 nodes: ~1e-5 of the change here


def test_each_node_is_the_first_order_split_at_theta_plus_alpha_delta(setup):
    model, delta, _ = setup
    s = informative_scores(model, delta, EXAMPLES, OPTIONS, steps=2, rule="midpoint")
    parts = []
    for alpha in (0.25, 0.75):
        with perturbed(model, delta, alpha):
            parts.append(informative_scores(model, delta, EXAMPLES, OPTIONS))
    for key in ("mlp", "heads", "kv_heads"):
        expected = 0.5 * getattr(parts[0], key) + 0.5 * getattr(parts[1], key)
        torch.testing.assert_close(getattr(s, key), expected)
    # through extractive_scores too; downstream / upstream are unaffected by steps
    both = extractive_scores(
        model, delta, EXAMPLES, OPTIONS, counterfactuals=2, steps=2, rule="midpoint"
    )
    torch.testing.assert_close(both.informative.mlp, s.mlp)
    plain = extractive_scores(model, delta, EXAMPLES, OPTIONS, counterfactuals=2)
    torch.testing.assert_close(both.downstream.heads, plain.downstream.heads)
    assert plain.informative.integration is None
    assert s.to_dict()["integration"]["weights"] == [0.5, 0.5]
