"""Shared fixtures: tiny random models (the bridge code path of real ones), built once."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from extractive_lens.models import tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama():
    """2-layer Llama with grouped-query attention (4 query heads, 2 K/V heads)."""
    return tiny_model("llama", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, seed=0)


@pytest.fixture(scope="session")
def tiny_mha():
    """2-layer Llama with plain multi-head attention."""
    return tiny_model("llama", n_layers=2, d_model=64, n_heads=4, seed=1)


@pytest.fixture(scope="session")
def tiny_gpt2():
    return tiny_model("gpt2", n_layers=2, d_model=64, n_heads=4, seed=0)


@pytest.fixture(scope="session", params=["llama", "gpt2"])
def tiny(request, tiny_llama, tiny_gpt2):
    """Each tiny architecture in turn."""
    return tiny_llama if request.param == "llama" else tiny_gpt2


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (slow tests only)."""
    from extractive_lens.models import load_model

    return load_model("smollm2-135m")
