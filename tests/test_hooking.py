"""The one hooked pass (extractive_lens.hooking): keep, edit, live, and the fired check."""

from __future__ import annotations

import pytest
import torch

from extractive_lens.hooking import hooked_run, substitution
from extractive_lens.models import tiny_model

PROMPTS = ["The people in the city Grace Miller is from speak", "Paris is the capital of"]


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", n_layers=2, seed=2)


def test_keep_reads_what_the_cache_reads(model):
    tokens = model.to_tokens(PROMPTS)
    names = ["blocks.0.hook_mlp_out", "blocks.1.attn.hook_z"]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        with hooked_run(model, keep=names) as capture:
            model(tokens)
    for n in names:
        assert torch.equal(capture.values[n], cache[n])
        assert not capture.values[n].requires_grad


def test_edit_replaces_the_activation_and_keep_sees_the_edit(model):
    tokens = model.to_tokens(PROMPTS)
    name = "blocks.1.hook_mlp_out"
    with torch.no_grad():
        plain = model(tokens)
        with hooked_run(model, keep=[name], edit={name: lambda x: 0 * x}) as capture:
            zeroed = model(tokens)
        with hooked_run(model, edit={name: substitution(torch.zeros_like(capture.values[name]))}):
            substituted = model(tokens)
    assert torch.count_nonzero(capture.values[name]) == 0
    assert not torch.allclose(zeroed, plain)
    assert torch.equal(substituted, zeroed)
    with torch.no_grad():  # the hooks are gone afterwards
        assert torch.equal(model(tokens), plain)


def test_live_gradient_is_the_derivative_along_that_activation(model):
    # d(output)/d(activation) . v equals the change of the output when v is added there.
    tokens = model.to_tokens(PROMPTS[:1])
    name = "blocks.1.hook_resid_pre"
    with hooked_run(model, live=[name], keep=[name]) as capture:
        out = model(tokens)[0, -1].logsumexp(-1)
    (grad,) = torch.autograd.grad(out, capture.live[name])
    v = torch.randn(capture.values[name].shape, generator=torch.Generator().manual_seed(0))
    h = 1e-3
    with torch.no_grad():
        shifted = []
        for sign in (1, -1):
            with hooked_run(model, edit={name: lambda x, s=sign: x + s * h * v}):
                shifted.append(model(tokens)[0, -1].logsumexp(-1))
    fd = (shifted[0] - shifted[1]) / (2 * h)
    # fp32 central difference: rounding ~ eps * |out| / h, truncation ~ h^2 |f'''|
    torch.testing.assert_close((grad * v).sum(), fd, rtol=2e-3, atol=2e-3)


def test_a_hook_that_never_fires_is_an_error_naming_it(model):
    # a forward that stops after block 0 never reaches block 1's hooks
    tokens = model.to_tokens(PROMPTS[:1])
    late, early = "blocks.1.hook_mlp_out", "blocks.0.hook_mlp_out"
    with (
        pytest.raises(RuntimeError, match=r"blocks\.1\.hook_mlp_out"),
        torch.no_grad(),
        hooked_run(model, keep=[late]),
    ):
        model(tokens, stop_at_layer=1)
    with (  # an ablation that would do nothing
        pytest.raises(RuntimeError, match="did not fire"),
        torch.no_grad(),
        hooked_run(model, keep=[early], edit={late: lambda x: 0 * x}),
    ):
        model(tokens, stop_at_layer=1)
    with torch.no_grad(), hooked_run(model, keep=[early, late], require=False) as capture:
        model(tokens, stop_at_layer=1)
    assert set(capture.values) == {early}
    with hooked_run(model, edit={late: lambda x: x}):
        pass  # no forward at all: nothing was asked to fire
    # a name the bridge does not have: the bridge refuses it
    with pytest.raises(KeyError), hooked_run(model, keep=["blocks.7.hook_mlp_out"]):
        pass
