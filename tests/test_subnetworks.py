"""Hard-concrete gates, mean ablation and the heuristic core (extractive_lens.subnetworks)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from extractive_lens.metrics import encode, forward, last_prompt_logits
from extractive_lens.models import load_model, named_parameters
from extractive_lens.subnetworks import (
    LIMIT_LEFT,
    LIMIT_RIGHT,
    TEMPERATURE,
    MaskConfig,
    MaskUnits,
    deterministic_gates,
    gated,
    heuristic_core,
    prob_one,
    prob_zero,
    sample_gates,
    target_at,
    unit_means,
)
from extractive_lens.worlds import build_tokenizer, make_world


def _stretched_cdf(x: torch.Tensor, log_alpha: float) -> torch.Tensor:
    """P(z_stretched <= x) from the concrete CDF, written independently of the module."""
    s = (x - LIMIT_LEFT) / (LIMIT_RIGHT - LIMIT_LEFT)
    return torch.sigmoid(TEMPERATURE * (torch.log(s) - torch.log(1 - s)) - log_alpha)


@pytest.mark.parametrize("log_alpha", [-2.0, 0.0, 0.7, 3.0])
def test_sampler_matches_the_distribution(log_alpha: float) -> None:
    n = 400_000
    la = torch.tensor([log_alpha], dtype=torch.float64)
    z = sample_gates(la, torch.rand(n, 1, generator=torch.Generator().manual_seed(0)).double())
    z = z[:, 0]
    p0, p1 = float(prob_zero(la)), float(prob_one(la))
    # The closed forms agree with the stretched CDF at 0 and 1.
    assert p0 == pytest.approx(
        float(_stretched_cdf(torch.tensor(0.0, dtype=torch.float64), log_alpha)), abs=1e-12
    )
    assert p1 == pytest.approx(
        1 - float(_stretched_cdf(torch.tensor(1.0, dtype=torch.float64), log_alpha)), abs=1e-12
    )
    # E[z] = int_0^1 P(z > t) dt, by quadrature of the CDF (midpoint rule, 20k cells).
    t = (torch.arange(20_000, dtype=torch.float64) + 0.5) / 20_000
    mean = float((1 - _stretched_cdf(t, log_alpha)).mean())
    for observed, expected in ((float((z == 0).double().mean()), p0),
                               (float((z == 1).double().mean()), p1)):  # fmt: skip
        se = math.sqrt(max(expected * (1 - expected), 1e-12) / n)
        assert abs(observed - expected) < 5 * se + 1e-9
    assert float(z.mean()) == pytest.approx(mean, abs=5 * float(z.std()) / math.sqrt(n))
    assert float(z.min()) >= 0 and float(z.max()) <= 1


def test_deterministic_gates_zero_the_expected_number_per_group() -> None:
    la = torch.tensor([5.0, -4.0, -3.0, 2.0, -6.0, 4.0])
    groups = [[0, 1, 2, 3], [4], [5]]
    z = deterministic_gates(la, groups)
    for g in groups:
        n_zero = round(float(prob_zero(la[g]).sum()))
        assert int((z[g] == 0).sum()) == n_zero
    assert z[1] == 0 and z[2] == 0 and z[4] == 0 and z[0] > 0.99 and z[5] > 0.99
    assert 0 < float(z[3]) < 1  # kept units carry the soft value sigmoid(la / T * 0.8)


def test_target_ramps_linearly() -> None:
    cfg = MaskConfig(steps=100, ramp=0.5)
    assert [target_at(s, 0.6, cfg) for s in (0, 25, 50, 99)] == pytest.approx([0, 0.3, 0.6, 0.6])


def _world_model(gqa: bool = True, seed: int = 0):  # noqa: ANN202
    from transformers import LlamaConfig, LlamaForCausalLM

    world = make_world()
    tok = build_tokenizer(world)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2 if gqa else 4,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return load_model(hf_model=LlamaForCausalLM(cfg), tokenizer=tok), world.first_hop()


def _gpt2():  # noqa: ANN202
    from extractive_lens import first_hop, tiny_model

    return tiny_model("gpt2", n_layers=2, n_heads=4), first_hop()


@pytest.mark.parametrize("make", [_world_model, _gpt2], ids=["llama-gqa", "gpt2"])
def test_mean_ablation_equals_an_exact_intervention(make) -> None:  # noqa: ANN001
    model, data = make()
    units = MaskUnits.of(model)
    means = unit_means(model, units, data.facts)
    batch = encode(model.tokenizer, data.facts, with_answers=False)
    z = torch.ones(len(units))
    index = units.index()
    head, mlp = units.units[index_of(units, "L1.H3")], units.units[index_of(units, "L0.MLP")]
    z[index[head]], z[index[mlp]] = 0.0, 0.0
    with torch.no_grad(), gated(model, units, z, means):
        got = last_prompt_logits(forward(model, batch), batch)

    def set_head(x, hook):  # noqa: ANN001, ANN202
        x = x.clone()
        x[:, :, 3] = means.values["blocks.1.attn.hook_z"][3]
        return x

    def set_mlp(x, hook):  # noqa: ANN001, ANN202
        return means.values["blocks.0.hook_mlp_out"].expand_as(x).clone()

    hooks = [("blocks.1.attn.hook_z", set_head), ("blocks.0.hook_mlp_out", set_mlp)]
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        want = last_prompt_logits(forward(model, batch), batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad(), gated(model, units, torch.ones(len(units)), means):
        same = last_prompt_logits(forward(model, batch), batch)
    with torch.no_grad():
        torch.testing.assert_close(same, last_prompt_logits(forward(model, batch), batch))


def index_of(units: MaskUnits, name: str) -> int:
    return units.names().index(name)


def test_masks_keep_the_one_head_that_carries_the_answer() -> None:
    """Planted structure: every head but L1.H2 writes nothing (W_O columns zeroed), MLPs write
    nothing; L1.H2 is made to dominate the logits. Every subnetwork keeps it; so does the core."""
    model, data = _world_model(gqa=True)
    p = named_parameters(model)
    with torch.no_grad():
        for layer in range(2):
            o = p[f"model.layers.{layer}.self_attn.o_proj.weight"]
            d = o.shape[1] // 4
            live = o[:, 2 * d : 3 * d].clone()
            o.zero_()
            if layer == 1:
                o[:, 2 * d : 3 * d] = 30 * live
            p[f"model.layers.{layer}.mlp.down_proj.weight"].zero_()
        p["model.norm.weight"].mul_(20)
    result = heuristic_core(
        model, data, sparsities=(0.8,), seeds=(0, 1), config=MaskConfig(steps=300), margin=1.0
    )
    for mask in result.masks:
        assert "L1.H2" in mask.kept
        assert len(mask.kept) <= 6, "the masks must actually prune"
    assert "L1.H2" in result.cores()[0.8]
    rows = result.table()
    assert rows[0]["sparsity"] == "full" and len(rows) == 3
    # Pruning only units that write nothing leaves the in-domain ranks unchanged.
    assert all(r["facts"] == pytest.approx(rows[0]["facts"], abs=0.5) for r in rows[1:])


def test_effective_size_and_overlap_bookkeeping() -> None:
    from extractive_lens.subnetworks import LearnedMask, SubnetworkResult

    units = ("L0.H0", "L0.MLP", "L1.H0", "L1.MLP")
    ranks = {"facts": [0, 0], "implications": [1, 1], "control_implications": [5, 5]}
    worse = {"facts": [3, 3], "implications": [5, 5], "control_implications": [5, 5]}

    def mask(target: float, seed: int, gates: list[float]) -> LearnedMask:
        return LearnedMask(units, torch.zeros(4), torch.tensor(gates), target, seed)

    masks = (mask(0.25, 0, [1, 0, 1, 1]), mask(0.5, 0, [1, 0, 0, 1]),
             mask(0.25, 1, [1, 1, 0, 1]), mask(0.5, 1, [0, 0, 1, 1]))  # fmt: skip
    scores = {r: {"L0.H0": 2.0, "L1.MLP": 1.0, "L0.MLP": -1.0, "L1.H0": 0.0} for r in
              ("informative", "upstream", "downstream")}  # fmt: skip
    res = SubnetworkResult({}, "d", units, ranks, masks, (ranks, worse, ranks, ranks), scores,
                           margin=1.0, top_k=2)  # fmt: skip
    assert res.cores() == {0.25: ["L0.H0", "L1.MLP"], 0.5: ["L1.MLP"]}
    eff = {r["seed"]: r for r in res.effective_size()}
    assert eff[0]["facts"] == 0.75 and eff[1]["facts"] == 0.5
    assert [r["keeps_ocr"] for r in res.table()[1:]] == [True, False, True, True]
    row = next(r for r in res.overlap() if r["sparsity"] == 0.5 and r["role"] == "informative")
    assert row["top_in_core"] == 1 and row["kept_if_ocr"] == 0.5 and row["kept_if_no_ocr"] == 1.0


def test_bad_inputs() -> None:
    model, data = _world_model()
    with pytest.raises(ValueError, match="sparsity"):
        heuristic_core(model, data, sparsities=(1.0,), seeds=(0,), config=MaskConfig(steps=1))
    with pytest.raises(ValueError, match="at least one"):
        heuristic_core(model, data, sparsities=(), seeds=(0,))
    with pytest.raises(ValueError, match="nothing to mask"):
        MaskUnits.of(model, heads=False, mlps=False)
    with pytest.raises(ValueError, match="steps"):
        MaskConfig(steps=0)


def test_cli_subnetworks_saves_masks(tmp_path) -> None:  # noqa: ANN001
    from safetensors.torch import load_file

    from extractive_lens.cli import main

    out = tmp_path / "out"
    argv = ["subnetworks", "--model", "tiny", "--lr", "0", "--steps", "3", "--sparsities",
            "0.5", "--mask-seeds", "0", "1", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["experiment"] == "heuristic_core" and len(saved["masks"]) == 2
    assert saved["provenance"]["versions"]["torch"]
    masks = load_file(out / "masks.safetensors")
    assert masks["s0.5_seed1.gates"].shape == (10,)


def test_component_totals_sum_to_the_score_total() -> None:
    from extractive_lens.delta import WeightDelta
    from extractive_lens.scores import extractive_scores
    from extractive_lens.subnetworks import component_totals

    model, data = _world_model(gqa=False)
    gen = torch.Generator().manual_seed(0)
    zero = WeightDelta.zeros_like(model)
    delta = WeightDelta({n: 1e-2 * torch.randn(t.shape, generator=gen) for n, t in zero.items()})
    scores = extractive_scores(
        model, delta, data.implications[:6], data.implication_options, counterfactuals=2
    )
    totals = component_totals(scores)
    for role, s in scores.roles().items():
        assert set(totals[role]) == {str(c) for c in s.components()}
        want = float(s.total()) / len(s.examples)
        assert sum(totals[role].values()) == pytest.approx(want, rel=1e-4, abs=1e-6)
