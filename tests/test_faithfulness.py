"""The faithfulness experiment against cases whose answer is known.

- Where R is linear in the changed outputs (delta on the last layer's W_out, final norm made the
  identity) the exact single-cell intervention equals the informative score cell by cell, so the
  rank correlation and the sign agreement are 1.
- Elsewhere the exact effect differs from the score at second order: shrinking the delta by 4
  shrinks |exact - score| by about 16 relative to the score's scale by 4.
"""

from __future__ import annotations

import pytest
import torch

from extractive_lens.delta import WeightDelta
from extractive_lens.experiments.faithfulness import faithfulness, spearman
from extractive_lens.models import tiny_model
from tests.test_scores import EXAMPLES, OPTIONS, linear_final_norm, random_delta


@pytest.fixture(scope="module")
def model():
    return tiny_model(
        "llama", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, seed=4, dtype=torch.float64
    )


def test_spearman():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2], [5, 5, 9]) == pytest.approx(1.0)  # ties: average ranks


def test_exact_linearisation_gives_correlation_one(model):
    w_out = "model.layers.1.mlp.down_proj.weight"
    delta = WeightDelta({w_out: random_delta(model, seed=5, scale=0.5)[w_out]})
    with linear_final_norm(model):
        result = faithfulness(model, delta, EXAMPLES, OPTIONS, top_k=3, n_random=12, seed=1)
    assert len(result.cells) == 15
    for cell in result.cells:
        assert cell.exact == pytest.approx(cell.score, rel=1e-6, abs=1e-9)
    nonzero = [c for c in result.cells if abs(c.score) > 1e-9]
    assert nonzero and all(c.component == "L1.MLP" for c in nonzero)
    stats = result.stats()
    assert stats["spearman"] == pytest.approx(1.0) and stats["sign_agreement"] == 1.0
    assert result.passes == {"forward+backward": 1, "forward": 16}
    assert [(r["group"], r["cells"]) for r in result.table()] == [
        ("top 3", 3),
        ("random", 12),
        ("all", 15),
    ]


def test_exact_effect_is_second_order_close_elsewhere(model):
    full = random_delta(model, seed=6, scale=0.02, dtype=torch.float64)
    gaps = []
    for eps in (0.25, 0.0625):
        delta = WeightDelta({n: eps * t for n, t in full.items()}, dtype=torch.float64)
        result = faithfulness(model, delta, EXAMPLES, OPTIONS, top_k=8, n_random=0)
        scale = max(abs(c.score) for c in result.cells)
        gaps.append(max(abs(c.exact - c.score) for c in result.cells) / scale)
        kinds = {c.component.split(".")[1][:2] for c in result.cells}
        if eps == 0.25:
            assert result.stats()["spearman"] > 0.8
    # relative gap is first order in eps: a 4x smaller delta gives a ~4x smaller relative gap
    assert gaps[1] < gaps[0] / 3
    assert kinds  # cells of several component kinds were patched
