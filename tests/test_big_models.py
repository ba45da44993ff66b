"""Models that outgrow one device: device_map loading, bf16 twins, activation checkpointing,
and deltas applied without a second full copy of the touched weights."""

from __future__ import annotations

import pytest
import torch

from extractive_lens.data import first_hop
from extractive_lens.delta import WeightDelta, snapshot
from extractive_lens.models import load_model, named_parameters, save_model, tiny_model
from extractive_lens.scores import extractive_scores
from extractive_lens.training import finetune

PROMPT = "The people in the city Grace Miller is from speak"

#: bf16 twin vs fp32 model: relative error of every score tensor (Frobenius norm). bf16 keeps
#: 8 significant bits (relative rounding 2^-9 = 0.2% per operation); a 2-layer forward, its
#: backward and the differences y - y~ (two close activations) measured 0.6%-2.3% here, so 10%
#: leaves a 4x margin for other machines' kernels.
BF16_RELATIVE = 0.10


@pytest.fixture(scope="module")
def data():
    return first_hop()


@pytest.fixture(scope="module")
def twins():
    return tiny_model("llama", n_layers=2, seed=0), tiny_model(
        "llama", n_layers=2, seed=0, dtype=torch.bfloat16
    )


def test_device_map_splits_across_cpu_and_disk(tmp_path):
    model = tiny_model("llama", n_layers=4, seed=2)
    save_model(model, tmp_path / "m")
    params = named_parameters(model)
    embed = params["model.embed_tokens.weight"].numel() * 4
    block = sum(p.numel() * 4 for n, p in params.items() if ".layers.0." in n)
    # room for the embedding and a few blocks (accelerate also reserves an offload buffer)
    budget = {"cpu": int(embed + 3.5 * block), "disk": 10 * embed}
    big = load_model(
        tmp_path / "m", device_map="auto", max_memory=budget, offload_folder=tmp_path / "off"
    )
    placed = big.original_model.hf_device_map
    assert set(placed.values()) == {"cpu", "disk"}, placed
    assert placed["model.embed_tokens"] == "cpu" and placed["model.layers.3"] == "disk", placed
    assert placed["model.layers.0"] == "cpu", placed
    tokens = model.to_tokens(PROMPT)
    with torch.no_grad():
        torch.testing.assert_close(big(tokens), model(tokens), rtol=0, atol=1e-6)
    offloaded = WeightDelta.zeros_like(model).restrict(layers=[3])
    with pytest.raises(ValueError, match="offloaded to disk"):
        offloaded.apply(big)
    resident = WeightDelta({"model.layers.0.mlp.down_proj.weight": torch.ones(64, 256)})
    before = named_parameters(big)["model.layers.0.mlp.down_proj.weight"].detach().clone()
    with torch.no_grad(), resident.applied(big, scale=1e-2):
        changed = big(tokens)
    assert not torch.allclose(changed, model(tokens).detach(), atol=1e-4)
    assert torch.equal(named_parameters(big)["model.layers.0.mlp.down_proj.weight"], before)
    with pytest.raises(ValueError, match="not hf_model"):
        load_model(tmp_path / "m", device_map="auto", device="cpu")


def test_bf16_twin_scores_within_tolerance(twins, data):
    fp32, bf16 = twins
    delta = finetune(fp32, data.facts[:8], lr=3e-3, epochs=2, progress=False).delta
    items, options = data.implications[:6], data.implication_options
    ours = extractive_scores(fp32, delta, items, options, counterfactuals=2)
    low = extractive_scores(bf16, delta, items, options, counterfactuals=2)
    for role in ("informative", "downstream", "upstream"):
        for kind in ("mlp", "heads"):
            a, b = getattr(getattr(ours, role), kind), getattr(getattr(low, role), kind)
            assert b.dtype == torch.float32  # accumulated in fp32
            assert a.norm() > 0
            assert (a - b).norm() <= BF16_RELATIVE * a.norm(), (role, kind)


def test_bf16_finetune_trains_fp32_masters_and_restores(twins, data):
    _, bf16 = twins
    before = snapshot(bf16)
    result = finetune(bf16, data.facts[:8], lr=3e-3, epochs=1, progress=False)
    assert result.delta.metadata["model_dtype"] == "torch.bfloat16"
    assert all(t.dtype == torch.float32 for t in result.delta.values())
    assert result.delta.norm() > 0
    linear = [n for n, p in named_parameters(bf16).items() if ".layers." in n and p.ndim == 2]
    assert sorted(result.delta) == sorted(linear)  # masters of the trained weights only
    assert all(torch.equal(before[n], p) for n, p in named_parameters(bf16).items())


def test_gradient_checkpointing_recomputes_blocks_and_gives_the_same_delta(twins, data):
    fp32, _ = twins
    calls = []
    # a pre-hook: the recomputation stops early once it has what the backward needs
    layer = fp32.blocks[0].original_component
    hook = layer.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        plain = finetune(fp32, data.facts[:8], lr=3e-3, epochs=2, batch_size=4, progress=False)
        n_plain = len(calls)
        calls.clear()
        saved = finetune(
            fp32,
            data.facts[:8],
            lr=3e-3,
            epochs=2,
            batch_size=4,
            progress=False,
            gradient_checkpointing=True,
        )
    finally:
        hook.remove()
    assert len(calls) == n_plain + 4  # each of the 4 steps ran block 0 again in its backward
    assert saved.delta.metadata["gradient_checkpointing"] is True
    for n, t in plain.delta.items():
        torch.testing.assert_close(saved.delta[n], t, rtol=1e-6, atol=1e-8)
    assert not hasattr(fp32.blocks[0], "forward") or "forward" not in vars(fp32.blocks[0])


@pytest.mark.parametrize("keep", ["memory", "cpu", "disk"])
def test_apply_keeps_originals_in_their_own_dtype_and_restores_bit_exactly(twins, keep):
    name = "model.layers.1.mlp.up_proj.weight"
    for model in twins:
        before = snapshot(model)
        gen = torch.Generator().manual_seed(0)
        touched = [n for n in before if ".layers." in n]
        delta = WeightDelta(
            {n: 1e-2 * torch.randn(before[n].shape, generator=gen) for n in touched}
        )
        with delta.applied(model, keep=keep):
            p = named_parameters(model)[name]
            assert torch.equal(p, (before[name].float() + delta[name]).to(p.dtype))
        assert all(torch.equal(before[n], p) for n, p in named_parameters(model).items())
    with pytest.raises(ValueError, match="keep must be"):
        delta.apply(twins[0], keep="gpu")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_hooked_delta_equals_applied_without_writing_linear_weights(arch):
    model = tiny_model(arch, n_layers=2, seed=4)
    before = snapshot(model)
    gen = torch.Generator().manual_seed(1)
    # every parameter: linear weights and biases (hooked), norms and embeddings (in place)
    delta = WeightDelta({n: 1e-2 * torch.randn(t.shape, generator=gen) for n, t in before.items()})
    tokens = model.to_tokens([PROMPT, "Paris is the capital of"])
    with torch.no_grad():
        theta_logits = model(tokens)

    def logits_and_grad():
        model.zero_grad()
        # the first block's first norm: its gradient flows back through every linear layer
        params = named_parameters(model)
        norm = next(p for n, p in params.items() if ".0." in n and p.ndim == 1)
        norm.requires_grad_(True)
        out = model(tokens)
        (grad,) = torch.autograd.grad(out[:, -1].logsumexp(-1).sum(), norm)
        return out.detach(), grad

    with delta.applied(model):
        expected, expected_grad = logits_and_grad()
    with delta.hooked(model, scale=1.0):
        linear = [n for n, p in named_parameters(model).items() if ".layers." in n or ".h." in n]
        linear = [n for n in linear if named_parameters(model)[n].ndim == 2]
        assert all(torch.equal(named_parameters(model)[n], before[n]) for n in linear)
        got, got_grad = logits_and_grad()
    # the same weights through the same kernels: bit for bit
    assert torch.equal(got, expected)
    assert torch.equal(got_grad, expected_grad)
    assert all(torch.equal(before[n], p) for n, p in named_parameters(model).items())
    with torch.no_grad():  # the hooks are gone: theta again, bit for bit
        assert torch.equal(model(tokens), theta_logits)


def test_hooked_keeps_no_shifted_weight_alive_between_forward_and_backward(monkeypatch):
    # theta' = W + Delta W exists for one layer's call only: the graph waiting for backward holds
    # a recipe, not the tensor (else memory would hold a second copy of every touched weight).
    import gc
    import weakref

    from extractive_lens import delta_apply

    model = tiny_model("llama", n_layers=2, seed=4)
    gen = torch.Generator().manual_seed(1)
    delta = WeightDelta(
        {
            n: 1e-2 * torch.randn(p.shape, generator=gen)
            for n, p in named_parameters(model).items()
            if ".layers." in n and p.ndim == 2
        }
    )
    made = []
    weight = delta_apply._ShiftedCall.weight

    def recorded(self, leaf):
        out = weight(self, leaf)
        made.append(weakref.ref(out))
        return out

    monkeypatch.setattr(delta_apply._ShiftedCall, "weight", recorded)
    tokens = model.to_tokens([PROMPT])
    first_norm = next(p for n, p in named_parameters(model).items() if ".0." in n and p.ndim == 1)
    with delta.hooked(model):
        logits = model(tokens)  # the graph is alive, waiting for backward
        gc.collect()
        assert len(made) == len(delta)  # one W' per touched weight, each for its call
        assert all(ref() is None for ref in made), "a shifted weight outlived its layer's call"
        torch.autograd.grad(logits[:, -1].logsumexp(-1).sum(), first_norm)
    assert len(made) == 2 * len(delta)  # backward formed each W' again
