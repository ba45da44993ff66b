"""Deltas from what users have: finetuned checkpoints on disk, other models, PEFT LoRA adapters.

Each is checked against a delta computed by hand (tensor subtraction / ``scale * B @ A``) and the
LoRA delta also against PEFT's own merged model (weights and logits).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from extractive_lens.delta import WeightDelta, snapshot
from extractive_lens.models import load_model, named_parameters, save_model, tiny_model

peft = pytest.importorskip("peft", reason="peft is in the dev extra")
PROMPTS = ["The people in the city Grace Miller is from speak", "Paris is the capital of"]


@pytest.fixture(scope="module")
def base():
    return tiny_model("llama", n_layers=2, seed=3)


def _finetuned(base, seed: int = 0) -> dict[str, torch.Tensor]:
    """Changed copies of two block weights (as a finetune of the block linears would leave)."""
    gen = torch.Generator().manual_seed(seed)
    params = named_parameters(base)
    return {
        n: params[n].detach() + 0.01 * torch.randn(params[n].shape, generator=gen)
        for n in ("model.layers.0.mlp.down_proj.weight", "model.layers.1.self_attn.q_proj.weight")
    }


def _sharded_checkpoint(base, changed, directory):
    """A save_pretrained-style directory split into two shards plus an index."""
    save_model(base, directory)
    state = load_file(directory / "model.safetensors")
    state.update({n: t.clone() for n, t in changed.items()})
    names = sorted(state)
    halves = {"model-00001-of-00002.safetensors": names[::2]}
    halves["model-00002-of-00002.safetensors"] = names[1::2]
    for file, keys in halves.items():
        save_file({k: state[k].contiguous() for k in keys}, directory / file)
    (directory / "model.safetensors").unlink()
    weight_map = {k: file for file, keys in halves.items() for k in keys}
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )


def test_between_a_model_and_a_sharded_checkpoint(base, tmp_path):
    changed = _finetuned(base)
    _sharded_checkpoint(base, changed, tmp_path / "ft")
    delta = WeightDelta.between(base, tmp_path / "ft")
    params = named_parameters(base)
    assert sorted(delta) == sorted(changed)  # unchanged tensors are left out
    for n, t in changed.items():
        assert torch.equal(delta[n], t.float() - params[n].detach().float())
    reverse = WeightDelta.between(tmp_path / "ft", base)
    assert all(torch.equal(reverse[n], -delta[n]) for n in delta)
    full = WeightDelta.between(base, tmp_path / "ft", skip_unchanged=False)
    assert len(full) == len(params) and full.norm() == pytest.approx(delta.norm())
    # the checkpoint loaded as a model and the delta applied to the base agree exactly
    finetuned = load_model(tmp_path / "ft")
    tokens = base.to_tokens(PROMPTS[0])
    with torch.no_grad(), delta.applied(base):
        applied = base(tokens)
    assert torch.equal(applied, finetuned(tokens))
    between_models = WeightDelta.between(base, finetuned)
    assert sorted(between_models) == sorted(delta)
    assert all(torch.equal(between_models[n], delta[n]) for n in delta)


def test_between_keeps_the_snapshot_form_and_refuses_bad_checkpoints(base, tmp_path):
    before = snapshot(base)
    assert len(WeightDelta.between(before, base)) == len(before)  # every snapshot name kept
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        WeightDelta.between(base, tmp_path)
    other = tiny_model("llama", n_layers=2, d_model=32, seed=3)
    save_model(other, tmp_path / "other")
    with pytest.raises(ValueError, match="not a finetune of this model"):
        WeightDelta.between(base, tmp_path / "other")
    save_model(tiny_model("gpt2", n_layers=1), tmp_path / "gpt2")
    with pytest.raises(KeyError, match="same architecture"):
        WeightDelta.between(base, tmp_path / "gpt2")
    with pytest.raises(TypeError, match="one side must be a loaded model"):
        WeightDelta.between(tmp_path / "gpt2", tmp_path / "other")


def _hf_twin(model, directory):
    from transformers import AutoModelForCausalLM

    save_model(model, directory)
    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def _adapter(hf, directory, **config):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    lora = LoraConfig(init_lora_weights=False, **config)  # random A and B: a non-zero delta
    peft_model = get_peft_model(hf, lora)
    peft_model.save_pretrained(directory)
    return peft_model


def _by_hand(adapter_dir, scale_of, transpose=False) -> dict[str, torch.Tensor]:
    tensors = load_file(adapter_dir / "adapter_model.safetensors")
    out = {}
    for key, a in tensors.items():
        if ".lora_A." not in key:
            continue
        b = tensors[key.replace(".lora_A.", ".lora_B.")]
        module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        w = scale_of(module) * (b.double() @ a.double())
        out[f"{module}.weight"] = (w.T if transpose else w).float()
    return out


@pytest.mark.parametrize("rslora", [False, True])
def test_from_peft_matches_hand_merge_and_peft_merged_logits(base, tmp_path, rslora):
    hf = _hf_twin(base, tmp_path / "base")
    targets = ["q_proj", "v_proj", "down_proj"]
    config = dict(r=4, lora_alpha=8, target_modules=targets, use_rslora=rslora)
    config["rank_pattern"] = {"layers.1.self_attn.v_proj": 2}
    peft_model = _adapter(hf, tmp_path / "adapter", **config)
    delta = WeightDelta.from_peft(base, tmp_path / "adapter")

    def scale_of(module):
        r = 2 if module.endswith("layers.1.self_attn.v_proj") else 4
        return 8 / math.sqrt(r) if rslora else 8 / r

    expected = _by_hand(tmp_path / "adapter", scale_of)
    assert sorted(delta) == sorted(expected) and len(delta) == 6
    for n, t in expected.items():
        torch.testing.assert_close(delta[n], t, rtol=1e-5, atol=1e-7)
    assert delta.metadata["source"] == "peft" and delta.metadata["r"] == 4
    # against PEFT's own merge: weights and logits
    merged = peft_model.merge_and_unload()
    merged_params = dict(merged.named_parameters())
    base_params = named_parameters(base)
    for n in delta:
        torch.testing.assert_close(
            base_params[n].detach() + delta[n], merged_params[n].detach(), rtol=0, atol=1e-6
        )
    tokens = base.to_tokens(PROMPTS)
    with torch.no_grad(), delta.applied(base):
        ours = base(tokens)
    with torch.no_grad():
        theirs = merged(tokens).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_from_peft_transposes_fan_in_fan_out_conv1d(tmp_path):
    gpt2 = tiny_model("gpt2", n_layers=2, seed=1)
    hf = _hf_twin(gpt2, tmp_path / "base")
    _adapter(hf, tmp_path / "a", r=2, lora_alpha=3, target_modules=["c_fc"], fan_in_fan_out=True)
    delta = WeightDelta.from_peft(gpt2, tmp_path / "a")
    expected = _by_hand(tmp_path / "a", lambda m: 3 / 2, transpose=True)
    assert sorted(delta) == ["transformer.h.0.mlp.c_fc.weight", "transformer.h.1.mlp.c_fc.weight"]
    for n, t in expected.items():
        assert delta[n].shape == (64, 256)  # Conv1D stores (in, out)
        torch.testing.assert_close(delta[n], t, rtol=1e-5, atol=1e-7)


def test_from_peft_refuses_what_it_cannot_merge(base, tmp_path):
    hf = _hf_twin(base, tmp_path / "base")
    _adapter(hf, tmp_path / "a", r=2, lora_alpha=2, target_modules=["q_proj"])
    config_path = tmp_path / "a" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    for key, message in [("use_dora", "DoRA"), ("modules_to_save", "replaces whole modules")]:
        config_path.write_text(json.dumps({**config, key: True}))
        with pytest.raises(ValueError, match=message):
            WeightDelta.from_peft(base, tmp_path / "a")
    config_path.write_text(json.dumps({**config, "peft_type": "IA3"}))
    with pytest.raises(ValueError, match="only LORA"):
        WeightDelta.from_peft(base, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        WeightDelta.from_peft(base, tmp_path)
    config_path.write_text(json.dumps(config))
    other = tiny_model("llama", n_layers=2, d_model=32, seed=3)
    with pytest.raises(ValueError, match="another model"):
        WeightDelta.from_peft(other, tmp_path / "a")
