"""WeightDelta: restriction to components/layers, arithmetic, exact apply/restore, files."""

from __future__ import annotations

import pytest
import torch

from extractive_lens.components import Component, components
from extractive_lens.delta import WeightDelta, layer_of, snapshot
from extractive_lens.models import model_identity, named_parameters, tiny_model

F32 = torch.finfo(torch.float32).eps  # deltas are stored and added in float32


def random_delta(model, seed: int = 0, scale: float = 0.1) -> WeightDelta:
    """A dense random delta over every parameter (embeddings and norms included)."""
    gen = torch.Generator().manual_seed(seed)
    return WeightDelta(
        {
            n: scale * torch.randn(p.shape, generator=gen)
            for n, p in named_parameters(model).items()
        },
        identity=None,
    )


def owned_mask(model, component: Component) -> dict[str, torch.Tensor]:
    params = named_parameters(model)
    masks = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in params.items()}
    for s in component.owned(model):
        masks[s.param][s.index(params[s.param].ndim)] = True
    return masks


def check_only_component_changes(model, component: Component) -> None:
    before = snapshot(model)
    delta = random_delta(model).restrict(components=[component], model=model)
    masks = owned_mask(model, component)
    assert sum(int(m.sum()) for m in masks.values()) > 0
    with delta.applied(model):
        after = snapshot(model)
    for n, b in before.items():
        a, m = after[n], masks[n]
        assert torch.equal(a[~m], b[~m]), f"{n} changed outside {component}"
        assert (a[m] != b[m]).all(), f"{n} unchanged inside {component}"
    for n, b in before.items():  # restored
        assert torch.equal(named_parameters(model)[n], b)


@pytest.mark.parametrize(
    "component", [Component(0, "head", 1), Component(1, "kv_head", 1), Component(0, "mlp")], ids=str
)
def test_restrict_to_one_component_llama_gqa(tiny_llama, component):
    check_only_component_changes(tiny_llama, component)


@pytest.mark.parametrize("component", [Component(1, "head", 2), Component(1, "mlp")], ids=str)
def test_restrict_to_one_component_mha_and_gpt2(tiny_mha, tiny_gpt2, component):
    check_only_component_changes(tiny_mha, component)
    check_only_component_changes(tiny_gpt2, component)


def test_restrict_to_all_components_drops_unowned(tiny_llama):
    delta = random_delta(tiny_llama).restrict(components=components(tiny_llama), model=tiny_llama)
    assert "model.embed_tokens.weight" not in delta
    assert "model.layers.0.input_layernorm.weight" not in delta  # feeds all heads: unowned
    assert torch.equal(
        delta["model.layers.1.mlp.down_proj.weight"],
        random_delta(tiny_llama)["model.layers.1.mlp.down_proj.weight"],
    )


def test_restrict_components_needs_model(tiny_llama):
    with pytest.raises(ValueError, match="model="):
        random_delta(tiny_llama).restrict(components=[Component(0, "mlp")])


def test_restrict_layers(tiny, tmp_path):
    full = random_delta(tiny)
    with pytest.raises(ValueError, match="model="):
        full.restrict(layers=[1])  # a plain dict of tensors records no layers
    one = full.restrict(layers=[1], model=tiny)
    assert one.names and all(layer_of(n, tiny) == 1 for n in one)
    assert len(one) == sum(layer_of(n, tiny) == 1 for n in full)
    assert all(torch.equal(one[n], full[n]) for n in one)
    # deltas made from a model record its layer map, also through a file
    made = WeightDelta.zeros_like(tiny)
    assert made.restrict(layers=[1]).names == one.names
    made.save(tmp_path / "d.safetensors")
    assert WeightDelta.load(tmp_path / "d.safetensors").restrict(layers=[1]).names == one.names
    outside = {n for n in full if layer_of(n, tiny) is None}
    assert len(outside) >= 2 and not outside & set(one)  # embeddings, final norm
    mlps = [Component(0, "mlp"), Component(1, "mlp")]
    both = full.restrict(layers=[1], components=mlps, model=tiny)
    assert set(both.names) == {s.param for s in mlps[1].owned(tiny)}


def test_layer_of(tiny_llama, tiny_gpt2):
    assert layer_of("model.layers.1.mlp.up_proj.weight", tiny_llama) == 1
    assert layer_of("transformer.h.0.attn.q.weight", tiny_gpt2) == 0
    assert layer_of("model.embed_tokens.weight", tiny_llama) is None
    assert layer_of("transformer.ln_f.weight", tiny_gpt2) is None


def test_arithmetic(precision):
    a = WeightDelta({"x": torch.randn(3, 4), "y": torch.randn(2)})
    b = WeightDelta({"x": torch.randn(3, 4), "z": torch.randn(5)})
    s = a + b
    assert s.names == ["x", "y", "z"]  # key union, missing = zero
    assert torch.equal(s["y"], a["y"]) and torch.equal(s["z"], b["z"])
    x = (a + b - b)["x"]
    precision.check(x, a["x"], eps=F32, scale=a["x"].abs() + b["x"].abs())
    assert torch.equal((a - b)["z"], -b["z"])
    assert torch.equal((2 * a)["x"], (a + a)["x"]) and torch.equal((a * 2)["y"], (a + a)["y"])
    assert torch.equal((-a)["x"], -a["x"])
    assert torch.equal((a - a)["x"], torch.zeros(3, 4))
    assert a.equal(1 * a) and not a.equal(2 * a) and not a.equal(s)
    assert abs((3 * a).norm() - 3 * a.norm()) < 1e-4
    with pytest.raises(ValueError, match="shapes differ"):
        _ = a + WeightDelta({"x": torch.randn(4, 3)})
    with pytest.raises(TypeError):
        _ = a + 1.0
    with pytest.raises(ValueError, match="different models"):
        _ = WeightDelta(a, identity={"name": "A"}) + WeightDelta(a, identity={"name": "B"})


def test_mapping_repr_and_to():
    a = WeightDelta({"x": torch.ones(3, 4, dtype=torch.float64)}, metadata={"lr": 1e-3})
    assert a["x"].dtype == torch.float32 and len(a) == 1 and list(a) == ["x"]
    assert a.numel == 12 and a.norm() == pytest.approx(12**0.5)
    assert "1 tensors" in repr(a) and "12 elements" in repr(a)
    assert a.to("cpu").metadata == {"lr": 1e-3}


def test_between_and_zeros_like(tiny_llama, precision):
    zero = WeightDelta.zeros_like(tiny_llama)
    assert zero.norm() == 0 and len(zero) == len(named_parameters(tiny_llama))
    assert zero.identity["name"] == tiny_llama.cfg.model_name
    before = snapshot(tiny_llama)
    delta = random_delta(tiny_llama, seed=3)
    with delta.applied(tiny_llama):
        measured = WeightDelta.between(before, tiny_llama)
    for n in delta:  # (theta + delta) - theta, each rounded to fp32
        scale = before[n].abs() + delta[n].abs()
        precision.check(measured[n], delta[n], eps=F32, scale=scale, msg=n)


def test_applied_restores_bit_exactly(tiny):
    before = snapshot(tiny)
    delta = random_delta(tiny, seed=1, scale=0.37)
    with delta.applied(tiny):
        changed = snapshot(tiny)
    assert all(not torch.equal(changed[n], before[n]) for n in before)
    assert all(torch.equal(p, before[n]) for n, p in named_parameters(tiny).items())
    with pytest.raises(RuntimeError, match="boom"), delta.applied(tiny, scale=-3.0):
        raise RuntimeError("boom")
    assert all(torch.equal(p, before[n]) for n, p in named_parameters(tiny).items())


def test_applied_scale_nests(tiny_llama, precision):
    delta = random_delta(tiny_llama, seed=2)
    with delta.applied(tiny_llama):
        once = snapshot(tiny_llama)
    with delta.applied(tiny_llama, scale=0.5), delta.applied(tiny_llama, scale=0.5):
        twice = snapshot(tiny_llama)
    with delta.applied(tiny_llama, scale=0.0):
        nothing = snapshot(tiny_llama)
    for n, p in named_parameters(tiny_llama).items():
        scale = p.abs() + delta[n].abs()
        precision.check(once[n], twice[n], eps=F32, scale=scale, msg=n)
        assert torch.equal(nothing[n], p)


def test_applied_bf16_keeps_dtype():
    model = tiny_model("llama", n_layers=1, d_model=32, seed=11, dtype=torch.bfloat16)
    before = snapshot(model)
    delta = random_delta(model)
    with delta.applied(model):
        after = named_parameters(model)["model.layers.0.mlp.up_proj.weight"]
        assert after.dtype == torch.bfloat16
        expected = (
            before["model.layers.0.mlp.up_proj.weight"].float()
            + delta["model.layers.0.mlp.up_proj.weight"]
        ).bfloat16()
        assert torch.equal(after, expected)
    assert all(torch.equal(p, before[n]) for n, p in named_parameters(model).items())


def test_apply_rejects_mismatch_before_touching(tiny_llama):
    before = snapshot(tiny_llama)
    # a good tensor first, then a misfit: nothing may be applied
    wrong = WeightDelta(
        {
            "model.layers.0.mlp.up_proj.weight": torch.ones(256, 64),
            "model.norm.weight": torch.ones(3),
        }
    )
    with pytest.raises(ValueError, match="does not fit"), wrong.applied(tiny_llama):
        pass
    with pytest.raises(ValueError, match="no such parameter"):
        WeightDelta({"nope": torch.ones(1)}).apply(tiny_llama)
    assert all(torch.equal(p, before[n]) for n, p in named_parameters(tiny_llama).items())


def test_save_load_round_trip(tiny_llama, tmp_path):
    delta = random_delta(tiny_llama).restrict(layers=[0], model=tiny_llama)
    meta = {"lr": 3e-3, "seed": 7, "nested": {"trainable": [1, 2]}}
    delta = WeightDelta(delta, identity=model_identity(tiny_llama), metadata=meta)
    path = delta.save(tmp_path / "sub" / "d.safetensors")
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    loaded = WeightDelta.load(path, model=tiny_llama)
    assert loaded.names == delta.names
    assert all(torch.equal(loaded[n], delta[n]) for n in delta)
    assert loaded.identity == delta.identity and loaded.identity["n_layers"] == 2
    assert loaded.metadata == meta
    from extractive_lens.results import versions

    assert loaded.versions == versions()  # the same record as every saved result
    assert {"extractive_lens", "torch", "transformer-lens", "transformers"} <= set(loaded.versions)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        delta.save(path)
    (2 * delta).save(path, overwrite=True)
    assert torch.equal(WeightDelta.load(path)[delta.names[0]], 2 * delta[delta.names[0]])


def test_load_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.ones(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a WeightDelta"):
        WeightDelta.load(tmp_path / "plain.safetensors")


@pytest.mark.parametrize("change", [{"d_model": 32}, {"n_layers": 1}])
def test_load_into_mismatched_model(tiny_llama, tmp_path, change):
    path = WeightDelta.between(snapshot(tiny_llama), tiny_llama).save(tmp_path / "d.safetensors")
    kw = {"n_layers": 2, "d_model": 64, "n_heads": 4, "n_kv_heads": 2, "seed": 0} | change
    other = tiny_model("llama", **kw)
    with pytest.raises(ValueError, match="does not fit") as err:
        WeightDelta.load(path, model=other)
    message = str(err.value)
    assert tiny_llama.cfg.model_name in message and other.cfg.model_name in message
    if "n_layers" in change:
        assert (
            "model.layers.1.self_attn.q_proj.weight: delta (64, 64), model has no such" in message
        )
    else:
        assert "model.embed_tokens.weight: delta (49152, 64), model (49152, 32)" in message


def test_float64_deltas_stay_float64_through_derivations_apply_and_files(tmp_path):
    model = tiny_model("gpt2", n_layers=1, d_model=32, seed=0, dtype=torch.float64)
    params = named_parameters(model)
    name = next(n for n, p in params.items() if p.ndim == 2 and ".h.0." in n)
    fine = torch.full(params[name].shape, 1e-3 + 1e-12, dtype=torch.float64)
    delta = WeightDelta({name: fine}, dtype=torch.float64)
    for derived in (
        delta * 2,
        -delta,
        delta + delta,
        delta.restrict(layers=[0], model=model),
        delta.restrict(components=components(model), model=model),
        WeightDelta.load(delta.save(tmp_path / "d.safetensors")),
    ):
        assert derived.dtype == torch.float64 and derived[name].dtype == torch.float64
    before = params[name].detach().clone()
    with delta.applied(model):  # added in float64: the 1e-12 survives
        assert torch.equal(params[name] - before, (before + fine) - before)
