"""finetune: learns facts, is deterministic, trains only what it is told, restores the model."""

from __future__ import annotations

import pytest
import torch

from extractive_lens.components import Component, components
from extractive_lens.data import first_hop
from extractive_lens.delta import WeightDelta, layer_of, snapshot
from extractive_lens.metrics import mean_rank
from extractive_lens.models import named_parameters, tiny_model
from extractive_lens.training import FinetuneResult, finetune, trainable_masks

LR = 3e-3


@pytest.fixture(scope="module")
def data():
    return first_hop(seed=0)


def same_weights(model, before) -> bool:
    return all(torch.equal(p, before[n]) for n, p in named_parameters(model).items())


def block_linear_names(model) -> list[str]:
    return [
        n
        for n, p in named_parameters(model).items()
        if layer_of(n, model) is not None and p.ndim == 2
    ]


def test_finetune_learns_facts_and_restores_the_model(tiny_llama, data):
    before = snapshot(tiny_llama)
    sets = {
        "facts": (data.facts, data.fact_options),
        "impl": (data.implications, data.options_for("implications")),
    }
    result = finetune(tiny_llama, data.facts, lr=LR, epochs=8, eval_sets=sets, progress=False)
    assert isinstance(result, FinetuneResult) and result.seconds > 0
    assert same_weights(tiny_llama, before)  # bit-exact
    assert [row["epoch"] for row in result.history] == list(range(9))
    assert result.history[0]["rank/facts"] >= 5  # near chance (9.5) before training
    assert result.final("facts") <= 0.5
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert set(result.history[-1]) == {"epoch", "loss", "rank/facts", "rank/impl"}
    assert result.table() == result.history and result.table() is not result.history
    with pytest.raises(KeyError, match="evaluated"):
        result.final("nope")
    delta = result.delta
    assert delta.names == block_linear_names(tiny_llama)
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in delta.values())
    assert delta.identity["name"] == tiny_llama.cfg.model_name
    meta = delta.metadata
    assert (meta["lr"], meta["epochs"], meta["batch_size"], meta["seed"]) == (LR, 8, 8, 0)
    assert meta["n_examples"] == 20 and meta["trainable"] == "block linear weights"
    with delta.applied(tiny_llama):  # the delta reproduces the finetuned model
        assert mean_rank(tiny_llama, data.facts, data.fact_options) <= 0.5
    assert same_weights(tiny_llama, before)


def test_finetune_is_deterministic(tiny_llama, data):
    runs = [
        finetune(tiny_llama, data.facts[:12], lr=LR, epochs=2, seed=s, progress=False)
        for s in (1, 1, 2)
    ]
    a, b, c = (r.delta for r in runs)
    assert a.equal(b) and runs[0].history == runs[1].history
    assert not a.equal(c)
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_gpt2_trains_weights_not_biases(tiny_gpt2, data):
    before = snapshot(tiny_gpt2)
    delta = finetune(tiny_gpt2, data.facts[:8], lr=LR, epochs=1, progress=False).delta
    assert delta.names == block_linear_names(tiny_gpt2)
    assert "transformer.h.0.attn.q.weight" in delta and not any(n.endswith("bias") for n in delta)
    assert all(t.abs().sum() > 0 for t in delta.values())
    assert same_weights(tiny_gpt2, before)


def test_trainable_layer(tiny_llama, data):
    delta = finetune(
        tiny_llama, data.facts[:8], lr=LR, epochs=1, trainable=[1], progress=False
    ).delta
    assert delta.names and all(layer_of(n, tiny_llama) == 1 for n in delta)
    assert all(t.abs().sum() > 0 for t in delta.values())
    assert delta.restrict(layers=[0]).norm() == 0
    assert "layers [1]" in delta.metadata["trainable"]


def test_trainable_components(tiny_llama, data):
    chosen = [Component(0, "head", 1), Component(1, "kv_head", 0), Component(1, "mlp")]
    before = snapshot(tiny_llama)
    delta = finetune(
        tiny_llama, data.facts[:8], lr=LR, epochs=1, trainable=chosen, progress=False
    ).delta
    assert same_weights(tiny_llama, before)
    params = named_parameters(tiny_llama)
    inside = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in params.items()}
    for c in chosen:
        for s in c.owned(tiny_llama):
            if params[s.param].ndim == 2:
                inside[s.param][s.index(2)] = True
    assert set(delta.names) == {n for n, m in inside.items() if m.any()}
    for n, t in delta.items():
        assert torch.equal(t[~inside[n]], torch.zeros_like(t[~inside[n]])), n
        assert (t[inside[n]] != 0).float().mean() > 0.9, n
    # restricting to the same components is then a no-op
    again = delta.restrict(components=chosen, model=tiny_llama)
    assert all(torch.equal(again[n], delta[n]) for n in delta)


def test_trainable_resolution(tiny_llama):
    default, described = trainable_masks(tiny_llama)
    assert list(default) == block_linear_names(tiny_llama) and described == "block linear weights"
    every, _ = trainable_masks(tiny_llama, components(tiny_llama))
    assert set(every) == set(default)
    assert all(m.all() for m in every.values())  # all components cover the default set exactly
    mixed, described = trainable_masks(tiny_llama, [0, Component(1, "mlp"), "model.norm.weight"])
    assert "model.norm.weight" in mixed and "model.layers.1.mlp.up_proj.weight" in mixed
    assert "model.layers.1.self_attn.q_proj.weight" not in mixed
    assert "layers [0]" in described and "L1.MLP" in described and "model.norm.weight" in described
    with pytest.raises(ValueError, match="out of range"):
        trainable_masks(tiny_llama, [2])
    with pytest.raises(ValueError, match="no parameters named"):
        trainable_masks(tiny_llama, ["model.nope"])
    with pytest.raises(ValueError, match="empty"):
        trainable_masks(tiny_llama, [])
    with pytest.raises(TypeError):
        trainable_masks(tiny_llama, [1.5])


def test_trainable_names_reach_any_parameter(tiny_llama, data):
    delta = finetune(
        tiny_llama, data.facts[:8], lr=LR, epochs=1, trainable=["model.norm.weight"], progress=False
    ).delta
    assert delta.names == ["model.norm.weight"] and delta.norm() > 0


def test_divergence_raises_and_restores(tiny_llama, data):
    before = snapshot(tiny_llama)
    flags = {n: p.requires_grad for n, p in named_parameters(tiny_llama).items()}
    with pytest.raises(FloatingPointError, match=r"epoch 1, step \d+ \(lr=1e\+30\).*lower the"):
        finetune(tiny_llama, data.facts, lr=1e30, epochs=3, progress=False)
    assert same_weights(tiny_llama, before)
    for n, p in named_parameters(tiny_llama).items():
        assert p.grad is None and p.requires_grad == flags[n]
    assert not tiny_llama.training


def test_poisoned_weight_raises_and_restores(data):
    model = tiny_model("llama", n_layers=1, d_model=32, seed=21)
    with torch.no_grad():
        named_parameters(model)["model.layers.0.mlp.up_proj.weight"][0, 0] = float("nan")
    before = snapshot(model)
    with pytest.raises(FloatingPointError, match="loss is nan at epoch 1, step 0"):
        finetune(model, data.facts[:4], lr=LR, epochs=1, progress=False)
    for n, p in named_parameters(model).items():
        assert torch.equal(p.isnan(), before[n].isnan()), n
        assert torch.equal(p.nan_to_num(), before[n].nan_to_num()), n


def test_bf16_model_uses_fp32_master_weights(data):
    model = tiny_model("llama", n_layers=1, d_model=32, seed=22, dtype=torch.bfloat16)
    before = snapshot(model)
    # 1e-5 per step is far below bf16 resolution at these weights (~1e-4): without fp32 master
    # weights almost every update would round away.
    result = finetune(model, data.facts[:16], lr=1e-5, epochs=1, batch_size=8, progress=False)
    assert same_weights(model, before)
    assert all(p.dtype == torch.bfloat16 for p in named_parameters(model).values())
    for t in result.delta.values():
        assert t.dtype == torch.float32
        assert (t != 0).float().mean() > 0.9
        assert t.abs().max() < 3e-5
    assert result.delta.metadata["model_dtype"] == "torch.bfloat16"


def test_base_delta(tiny_llama, data):
    before = snapshot(tiny_llama)
    sets = {"facts": (data.facts, data.fact_options)}
    first = finetune(tiny_llama, data.facts, lr=LR, epochs=4, eval_sets=sets, progress=False)
    on_top = finetune(
        tiny_llama, data.facts, lr=LR, epochs=0, eval_sets=sets, base=first.delta, progress=False
    )
    assert same_weights(tiny_llama, before)
    assert on_top.history[0]["rank/facts"] == first.final("facts")
    assert on_top.delta.norm() == 0 and on_top.delta.metadata["base"]["norm"] > 0
    more = finetune(tiny_llama, data.facts[:8], lr=LR, epochs=1, base=first.delta, progress=False)
    assert same_weights(tiny_llama, before)
    assert more.delta.norm() > 0
    with (first.delta + more.delta).applied(tiny_llama):  # theta + base + delta
        assert mean_rank(tiny_llama, data.facts, data.fact_options) <= first.final("facts") + 1


def test_argument_checks(tiny_llama, data):
    with pytest.raises(ValueError, match="empty"):
        finetune(tiny_llama, [], lr=LR, epochs=1, progress=False)
    with pytest.raises(ValueError, match="lr"):
        finetune(tiny_llama, data.facts, lr=0.0, epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        finetune(tiny_llama, data.facts, lr=LR, epochs=-1, progress=False)


def test_progress_bar_and_pairs(tiny_llama, capsys):
    pairs = [("Ann Lee lives in", "Paris"), ("Bo Ng lives in", "Rome")]
    result = finetune(
        tiny_llama,
        pairs,
        lr=LR,
        epochs=1,
        progress=True,
        eval_sets={"f": (pairs, ["Paris", "Rome"])},
    )
    assert "finetune" in capsys.readouterr().err
    assert isinstance(result.delta, WeightDelta) and result.delta.metadata["n_examples"] == 2
