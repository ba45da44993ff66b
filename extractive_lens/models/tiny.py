"""Random-initialised models of any tested family with SmolLM2's tokenizer, for tests.

Registered as the named models ``"tiny"`` (Llama) and ``"tiny-gpt2"``.
"""

from __future__ import annotations

import contextlib

import torch
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.models.loading import load_model
from extractive_lens.models.named import NamedLoader, register_named_model
from extractive_lens.models.smollm2 import load_tokenizer


def tiny_model(
    arch: str = "llama",
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int | None = None,
    seed: int = 0,
    d_mlp: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> TransformerBridge:
    """A random-initialised model of any tested family with SmolLM2's tokenizer, for tests.

    ``arch`` is a key of ``extractive_lens.families.FAMILIES`` (``"llama"``, ``"gpt2"``,
    ``"gpt-neox"``, ``"gemma2"``, ...). Goes through the same bridge code path as real models.
    ``n_kv_heads < n_heads`` gives grouped-query attention (1: multi-query) where the family has
    it. Same arguments and seed give identical weights.
    """
    from extractive_lens.families import build_hf

    tokenizer = load_tokenizer()
    d_mlp = d_mlp or 4 * d_model
    with _seeded(seed):
        hf = build_hf(
            arch,
            len(tokenizer),
            n_layers,
            d_model,
            n_heads,
            n_kv_heads,
            d_mlp,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            # SmolLM2-like; changing it would change every seed's weights
            **({"tie_word_embeddings": True} if arch == "llama" else {}),
        )
    hf.config._name_or_path = (
        f"tiny-{arch}-L{n_layers}-d{d_model}-h{n_heads}-kv{n_kv_heads}-s{seed}"
    )
    return load_model(hf_model=hf, tokenizer=tokenizer, device=device, dtype=dtype)


@contextlib.contextmanager
def _seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _tiny_loader(arch: str) -> NamedLoader:
    def load(
        name: str, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> TransformerBridge:
        return tiny_model(arch, device=device, dtype=dtype)

    return load


register_named_model("tiny", _tiny_loader("llama"))
register_named_model("tiny-gpt2", _tiny_loader("gpt2"))
