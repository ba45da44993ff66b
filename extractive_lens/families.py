"""Architecture families tested through the bridge, as tiny random models built from a config.

Each family names its ``transformers`` config and model classes and how to shrink them; the
structure itself (where weights live, which hooks hold what) is never written here: it is read off
the bridge by :mod:`extractive_lens.structure`. ``tiny_model(family)`` builds one.

>>> from extractive_lens.families import FAMILIES
>>> FAMILIES["gpt-neox"].example
'EleutherAI/pythia-160m'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    """A dense decoder-only family and how to build a tiny member of it.

    Attributes:
        name: the key accepted by ``tiny_model``.
        config: the ``transformers`` config class name.
        model: the causal-LM class name.
        example: an example checkpoint of the family (README table).
        kwargs: (vocab, layers, d_model, heads, kv_heads, d_mlp) -> config keyword arguments.
        gqa: whether the family supports fewer K/V heads than query heads.
    """

    name: str
    config: str
    model: str
    example: str
    kwargs: Callable[[int, int, int, int, int, int], dict[str, Any]]
    gqa: bool = True


def _llama_like(v: int, n: int, d: int, h: int, kv: int, m: int) -> dict[str, Any]:
    return {
        "vocab_size": v,
        "hidden_size": d,
        "intermediate_size": m,
        "num_hidden_layers": n,
        "num_attention_heads": h,
        "num_key_value_heads": kv,
        "max_position_embeddings": 256,
    }


def _with(**extra: Any) -> Callable[..., dict[str, Any]]:
    def build(v: int, n: int, d: int, h: int, kv: int, m: int) -> dict[str, Any]:
        return {**_llama_like(v, n, d, h, kv, m), **extra}

    return build


def _gemma(v: int, n: int, d: int, h: int, kv: int, m: int) -> dict[str, Any]:
    return {**_llama_like(v, n, d, h, kv, m), "head_dim": d // h}


def _gpt2(v: int, n: int, d: int, h: int, kv: int, m: int) -> dict[str, Any]:
    return {
        "vocab_size": v,
        "n_embd": d,
        "n_layer": n,
        "n_head": h,
        "n_inner": m,
        "n_positions": 256,
    }


def _gptj(v: int, n: int, d: int, h: int, kv: int, m: int) -> dict[str, Any]:
    return {**_gpt2(v, n, d, h, kv, m), "rotary_dim": d // h // 2}


def _neox(v: int, n: int, d: int, h: int, kv: int, m: int) -> dict[str, Any]:
    out = _llama_like(v, n, d, h, kv, m)
    del out["num_key_value_heads"]
    return out


def _falcon(v: int, n: int, d: int, h: int, kv: int, m: int) -> dict[str, Any]:
    return {
        "vocab_size": v,
        "hidden_size": d,
        "num_hidden_layers": n,
        "num_attention_heads": h,
        "multi_query": True,
        "parallel_attn": True,
        "new_decoder_architecture": False,
        "bias": False,
    }


def _gpt_like(**names: str) -> Callable[..., dict[str, Any]]:
    """Configs with their own key names: ``names`` maps vocab/layers/d_model/heads/d_mlp to them."""

    def build(v: int, n: int, d: int, h: int, kv: int, m: int) -> dict[str, Any]:
        values = {"vocab": v, "layers": n, "d_model": d, "heads": h, "d_mlp": m}
        return {key: values[k] for k, key in names.items()}

    return build


def _gpt_neo(v: int, n: int, d: int, h: int, kv: int, m: int) -> dict[str, Any]:
    return {
        "vocab_size": v,
        "num_layers": n,
        "hidden_size": d,
        "num_heads": h,
        "intermediate_size": m,
        "attention_types": [[["global", "local"], n // 2]],  # alternating, as the checkpoints
    }


_GPT = {"vocab": "vocab_size", "layers": "n_layer", "d_model": "n_embd", "heads": "n_head"}


def _extra(builder: Callable[..., dict[str, Any]], **extra: Any) -> Callable[..., dict[str, Any]]:
    def build(v: int, n: int, d: int, h: int, kv: int, m: int) -> dict[str, Any]:
        return {**builder(v, n, d, h, kv, m), **extra}

    return build


_F = [
    Family("llama", "LlamaConfig", "LlamaForCausalLM", "meta-llama/Llama-3.2-1B", _llama_like),
    Family(
        "mistral", "MistralConfig", "MistralForCausalLM", "mistralai/Mistral-7B-v0.1", _llama_like
    ),
    Family("qwen2", "Qwen2Config", "Qwen2ForCausalLM", "Qwen/Qwen2.5-0.5B", _llama_like),
    Family("qwen3", "Qwen3Config", "Qwen3ForCausalLM", "Qwen/Qwen3-0.6B", _gemma),
    Family("gemma", "GemmaConfig", "GemmaForCausalLM", "google/gemma-2b", _gemma),
    Family("gemma2", "Gemma2Config", "Gemma2ForCausalLM", "google/gemma-2-2b", _gemma),
    Family("gemma3", "Gemma3TextConfig", "Gemma3ForCausalLM", "google/gemma-3-1b-pt", _gemma),
    Family("olmo", "OlmoConfig", "OlmoForCausalLM", "allenai/OLMo-1B-hf", _llama_like),
    Family("olmo2", "Olmo2Config", "Olmo2ForCausalLM", "allenai/OLMo-2-0425-1B", _llama_like),
    Family("gpt2", "GPT2Config", "GPT2LMHeadModel", "openai-community/gpt2", _gpt2, gqa=False),
    Family(
        "gpt-neox", "GPTNeoXConfig", "GPTNeoXForCausalLM", "EleutherAI/pythia-160m", _neox, False
    ),
    Family("gpt-j", "GPTJConfig", "GPTJForCausalLM", "EleutherAI/gpt-j-6b", _gptj, gqa=False),
    Family("phi", "PhiConfig", "PhiForCausalLM", "microsoft/phi-2", _llama_like),
    Family(
        "phi3", "Phi3Config", "Phi3ForCausalLM", "microsoft/Phi-3-mini-4k-instruct", _llama_like
    ),
    Family(
        "stablelm",
        "StableLmConfig",
        "StableLmForCausalLM",
        "stabilityai/stablelm-2-1_6b",
        _llama_like,
    ),
    Family(
        "stablelm-parallel",
        "StableLmConfig",
        "StableLmForCausalLM",
        "stabilityai/stablelm-2-1_6b (use_parallel_residual=True variant)",
        _with(use_parallel_residual=True),
    ),
    Family(
        "granite",
        "GraniteConfig",
        "GraniteForCausalLM",
        "ibm-granite/granite-3.0-2b-base",
        _llama_like,
    ),
    Family("falcon", "FalconConfig", "FalconForCausalLM", "tiiuae/falcon-7b", _falcon, gqa=False),
    # Further dense decoder-only families TransformerLens 4.3 bridges (same tests).
    Family("cohere", "CohereConfig", "CohereForCausalLM", "CohereForAI/c4ai-command-r-v01", _gemma),
    Family(
        "cohere2",
        "Cohere2Config",
        "Cohere2ForCausalLM",
        "CohereForAI/c4ai-command-r7b-12-2024",
        _gemma,
    ),
    Family(
        "starcoder2", "Starcoder2Config", "Starcoder2ForCausalLM", "bigcode/starcoder2-3b", _gemma
    ),
    Family("olmo3", "Olmo3Config", "Olmo3ForCausalLM", "allenai/Olmo-3-1025-7B", _gemma),
    Family("nemotron", "NemotronConfig", "NemotronForCausalLM", "nvidia/Minitron-4B-Base", _gemma),
    Family("exaone4", "Exaone4Config", "Exaone4ForCausalLM", "LGAI-EXAONE/EXAONE-4.0-1.2B", _gemma),
    Family("arcee", "ArceeConfig", "ArceeForCausalLM", "arcee-ai/AFM-4.5B", _gemma),
    Family("apertus", "ApertusConfig", "ApertusForCausalLM", "swiss-ai/Apertus-8B-2509", _gemma),
    Family(
        "vaultgemma", "VaultGemmaConfig", "VaultGemmaForCausalLM", "google/vaultgemma-1b", _gemma
    ),
    Family(
        "bitnet", "BitNetConfig", "BitNetForCausalLM", "microsoft/bitnet-b1.58-2B-4T-bf16", _gemma
    ),
    Family(
        "seed-oss",
        "SeedOssConfig",
        "SeedOssForCausalLM",
        "ByteDance-Seed/Seed-OSS-36B-Base",
        _gemma,
    ),
    Family(
        "hunyuan",
        "HunYuanDenseV1Config",
        "HunYuanDenseV1ForCausalLM",
        "tencent/Hunyuan-1.8B-Instruct",
        _gemma,
    ),
    Family("ernie4.5", "Ernie4_5Config", "Ernie4_5ForCausalLM", "baidu/ERNIE-4.5-0.3B-PT", _gemma),
    Family("ministral3", "Ministral3Config", "Ministral3ForCausalLM", "(Ministral 3)", _gemma),
    Family("jais2", "Jais2Config", "Jais2ForCausalLM", "(Jais 2)", _gemma),
    Family(
        "smollm3",
        "SmolLM3Config",
        "SmolLM3ForCausalLM",
        "HuggingFaceTB/SmolLM3-3B",
        _extra(_gemma, pad_token_id=0),
    ),
    Family(
        "glm",
        "GlmConfig",
        "GlmForCausalLM",
        "THUDM/glm-4-9b-chat-hf",
        _extra(_gemma, pad_token_id=0),
    ),
    Family(
        "glm4",
        "Glm4Config",
        "Glm4ForCausalLM",
        "THUDM/GLM-4-9B-0414",
        _extra(_gemma, pad_token_id=0),
    ),
    Family(
        "gpt-bigcode",
        "GPTBigCodeConfig",
        "GPTBigCodeForCausalLM",
        "bigcode/gpt_bigcode-santacoder (multi-query)",
        _extra(_gpt2, multi_query=True),
        gqa=False,
    ),
    Family(
        "gpt-neo",
        "GPTNeoConfig",
        "GPTNeoForCausalLM",
        "EleutherAI/gpt-neo-125m",
        _gpt_neo,
        gqa=False,
    ),
    Family(
        "bloom",
        "BloomConfig",
        "BloomForCausalLM",
        "bigscience/bloom-560m",
        _gpt_like(vocab="vocab_size", layers="n_layer", d_model="hidden_size", heads="n_head"),
        gqa=False,
    ),
    Family(
        "opt",
        "OPTConfig",
        "OPTForCausalLM",
        "facebook/opt-125m",
        _gpt_like(
            vocab="vocab_size",
            layers="num_hidden_layers",
            d_model="hidden_size",
            heads="num_attention_heads",
            d_mlp="ffn_dim",
        ),
        gqa=False,
    ),
    Family(
        "openai-gpt",
        "OpenAIGPTConfig",
        "OpenAIGPTLMHeadModel",
        "openai-community/openai-gpt",
        _gpt_like(**_GPT),
        gqa=False,
    ),
    Family(
        "mpt",
        "MptConfig",
        "MptForCausalLM",
        "mosaicml/mpt-7b",
        _gpt_like(vocab="vocab_size", layers="n_layers", d_model="d_model", heads="n_heads"),
        gqa=False,
    ),
]
# Bridged by TransformerLens 4.3 and buildable from a config, but not in the tested list: why.
NOT_TESTED = {
    "codegen": "the bridge's forward fails with transformers 5.x ('CodeGenAttention' object has "
    "no attribute 'embed_positions')",
    "xglm": "HF's XGLM cannot run in float64 (its attention mask overflows), so the finite-"
    "difference checks cannot run at their precision",
    "falcon (new_decoder_architecture)": "the bridge's QKV split fails for grouped K/V "
    "(split_with_sizes error); classic Falcon (multi-query, parallel) is tested",
    "helium": "TransformerLens 4.3 does not bridge HeliumForCausalLM",
}
REQUIRED = (  # the families the issue names
    *("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "olmo", "olmo2"),
    *("gpt2", "gpt-neox", "gpt-j", "phi", "phi3", "stablelm", "granite"),
)
FAMILIES: dict[str, Family] = {f.name: f for f in _F}


def build_hf(
    family: str,
    vocab: int,
    n_layers: int,
    d_model: int,
    n_heads: int,
    n_kv_heads: int | None,
    d_mlp: int,
    **extra: Any,
) -> Any:
    """A random-initialised Hugging Face model of ``family`` (seed it from outside)."""
    import transformers

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(FAMILIES)}")
    f = FAMILIES[family]
    if n_kv_heads not in (None, n_heads) and not f.gqa:
        raise ValueError(f"{family} has no grouped-query attention: leave n_kv_heads=None.")
    kv = n_kv_heads or n_heads
    config = getattr(transformers, f.config)(
        **f.kwargs(vocab, n_layers, d_model, n_heads, kv, d_mlp), **extra
    )
    return getattr(transformers, f.model)(config)
