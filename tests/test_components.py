"""Components and the parameter slices they own."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from _shared import assert_ownership_partitions

from extractive_lens.components import (
    Component,
    UnsupportedModelError,
    components,
    kv_group,
)
from extractive_lens.models import named_parameters


def test_enumeration(tiny_llama, tiny_mha, tiny_gpt2):
    assert len(components(tiny_llama)) == 2 * (4 + 2 + 1)  # query heads, KV heads, MLP
    assert len(components(tiny_mha)) == 2 * (4 + 1)  # no separate KV heads without GQA
    assert len(components(tiny_gpt2, layers=[1], kinds=["head"])) == 4
    assert components(tiny_llama)[0] == Component(0, "head", 0)
    assert str(Component(1, "kv_head", 0)) == "L1.KV0" and str(Component(0, "mlp")) == "L0.MLP"
    assert len({Component(0, "mlp"), Component(0, "mlp")}) == 1  # hashable, by value
    with pytest.raises(ValueError, match="out of range"):
        components(tiny_llama, layers=[7])


def test_component_validation():
    with pytest.raises(ValueError):
        Component(0, "head")
    with pytest.raises(ValueError):
        Component(0, "mlp", 1)
    with pytest.raises(ValueError):
        Component(0, "neuron", 1)


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_mha", "tiny_gpt2"])
def test_ownership_partitions_every_element_once(fixture, request):
    """Owned slices plus unowned parameters cover each element exactly once: no double count."""
    assert_ownership_partitions(request.getfixturevalue(fixture))


def _z_after_perturbing(model, component, layer=0):
    ids = torch.tensor([[5, 17, 300, 42, 7, 99]])
    store = {}

    def grab(z, hook):
        store["z"] = z.detach().clone()

    params = named_parameters(model)
    with torch.no_grad(), model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_z", grab)]):
        model(ids)
        before = store["z"]
        saved = {s.param: params[s.param].detach().clone() for s in component.owned(model)}
        try:
            gen = torch.Generator().manual_seed(0)
            for s in component.owned(model):
                p = params[s.param]
                p.add_(torch.randn(p.shape, generator=gen) * s.mask(p))
            model(ids)
        finally:
            for name, value in saved.items():
                params[name].copy_(value)
    return (store["z"] - before).abs().amax(dim=(0, 1, 3))  # change per head


@pytest.mark.parametrize("fixture", ["tiny_mha", "tiny_gpt2"])
def test_head_slices_touch_only_that_head(fixture, request):
    model = request.getfixturevalue(fixture)
    change = _z_after_perturbing(model, Component(0, "head", 2))
    assert change[2] > 1e-3
    assert torch.all(change[[0, 1, 3]] == 0)


def test_kv_head_slices_touch_only_its_query_group(tiny_llama):
    change = _z_after_perturbing(tiny_llama, Component(0, "kv_head", 1))
    group = [h for h in range(4) if kv_group(tiny_llama, h) == 1]
    assert group == [2, 3]
    assert torch.all(change[group] > 1e-4)
    assert torch.all(change[[0, 1]] == 0)
    # and a GQA query head owns no K/V rows
    assert not any(
        "k_proj" in s.param or "v_proj" in s.param
        for s in Component(0, "head", 0).owned(tiny_llama)
    )


def test_unsupported_architecture_fails_clearly():
    fake = SimpleNamespace(cfg=SimpleNamespace(architecture="SomeEncoderDecoder"), blocks=[])
    with pytest.raises(UnsupportedModelError, match="unsupported: SomeEncoderDecoder .*supports"):
        components(fake)
