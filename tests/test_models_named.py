"""Named models: the name -> loader registry, its entry points; models never imports worlds."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from extractive_lens.models import (
    ENTRY_POINT_GROUP,
    ModelLoadError,
    load_model,
    load_named_model,
    named_model_loader,
    named_models,
    register_named_model,
)
from extractive_lens.models import named as registry

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry as it is after ``import extractive_lens.models``, restored afterwards."""
    monkeypatch.setattr(registry, "_LOADERS", {k: v for k, v in registry._LOADERS.items()})
    for name in [n for n in registry._LOADERS if n.startswith("world-")]:
        del registry._LOADERS[name]


def _declare(monkeypatch, *declared: importlib.metadata.EntryPoint):
    """Make ``entry_points(group=...)`` list exactly ``declared``, as an installed distribution
    would declare them."""
    real = importlib.metadata.entry_points

    def entry_points(**select):
        if select.get("group") == ENTRY_POINT_GROUP:
            return importlib.metadata.EntryPoints(declared)
        return real(**select)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_a_registered_loader_is_what_load_model_returns(fresh_registry, tiny_gpt2):
    calls = []

    def loader(name, *, device=None, dtype=None):
        calls.append((name, device, dtype))
        return tiny_gpt2

    register_named_model("my-model", loader)
    assert load_model("my-model", dtype=torch.float64) is tiny_gpt2
    assert calls == [("my-model", None, torch.float64)]
    assert "my-model" in named_models()
    with pytest.raises(ValueError, match="non-empty string"):
        register_named_model("", loader)
    with pytest.raises(TypeError, match="must be callable"):
        register_named_model("other", "not a function")


def test_unknown_name_lists_the_known_names_and_the_fix(fresh_registry, monkeypatch):
    with pytest.raises(ModelLoadError, match="no model is registered under the name 'nope'") as e:
        load_named_model("nope")
    message = str(e.value)
    assert "tiny, tiny-gpt2" in message and "world-*" in message
    assert "register_named_model(name, loader)" in message and ENTRY_POINT_GROUP in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ModelLoadError, match=r"smollm2-135m, tiny, tiny-gpt2.*register_named_model"
    ):
        load_model("someone/not-a-cached-model")


def test_an_entry_point_registers_its_names_lazily(fresh_registry, monkeypatch, tmp_path):
    # A user's package, never imported by the test: its entry point names the prefix "fake-".
    (tmp_path / "fake_provider.py").write_text(
        "from extractive_lens.models import register_named_model\n"
        "RUNS = []\n"
        "def register():\n"
        "    RUNS.append(1)\n"
        "    register_named_model('fake-one', lambda name, *, device=None, dtype=None: name)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_provider", raising=False)
    _declare(monkeypatch, importlib.metadata.EntryPoint("fake-", "fake_provider:register", "g"))
    assert named_model_loader("other-name") is None
    assert "fake_provider" not in sys.modules  # a name outside its prefix imports nothing
    assert "fake-*" in named_models()
    assert load_model("fake-one") == "fake-one"
    assert sys.modules["fake_provider"].RUNS == [1]
    assert load_model("fake-one") == "fake-one"
    assert sys.modules["fake_provider"].RUNS == [1]  # registered now: not run again


def test_a_provider_that_cannot_be_imported_is_named(fresh_registry, monkeypatch):
    _declare(monkeypatch, importlib.metadata.EntryPoint("gone-", "no_such_module_x:f", "g"))
    with pytest.raises(ModelLoadError, match="'no_such_module_x:f'.*cannot be imported"):
        named_model_loader("gone-model")


def test_world_models_load_through_the_pyprojects_entry_point(fresh_registry, monkeypatch):
    """What ``pip install`` declares: the pyproject's entry points."""
    import extractive_lens.worlds as worlds

    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
    _declare(
        monkeypatch,
        *(importlib.metadata.EntryPoint(k, v, ENTRY_POINT_GROUP) for k, v in declared.items()),
    )
    assert named_model_loader("world-default") is worlds.load_world_model

    calls = []

    def fake_world_model(name, *, build=True, progress=True, device=None, dtype=None):
        calls.append((name, device, dtype))
        return f"bridge of {name}"

    # load_model passes the name, device and dtype on, as it did when it called worlds itself.
    monkeypatch.setattr(worlds, "load_world_model", fake_world_model)
    monkeypatch.setitem(worlds.WORLD_MODELS, "world-late", worlds.WorldModelSpec())
    assert load_model("world-late", device="cpu", dtype=torch.float64) == "bridge of world-late"
    assert calls == [("world-late", "cpu", torch.float64)]


def test_models_imports_nothing_above_it():
    # A fresh import of the package (torch and transformer_lens stay loaded, so it is quick),
    # then this session's modules back in place.
    ours = {k: m for k, m in sys.modules.items() if k.split(".")[0] == "extractive_lens"}
    for name in ours:
        del sys.modules[name]
    try:
        importlib.import_module("extractive_lens.models")
        loaded = {k for k in sys.modules if k.split(".")[0] == "extractive_lens"}
    finally:
        for name in [k for k in sys.modules if k.split(".")[0] == "extractive_lens"]:
            del sys.modules[name]
        sys.modules.update(ours)
    assert "extractive_lens.models.named" in loaded
    assert sorted(k for k in loaded if not k.startswith("extractive_lens.models")) == [
        "extractive_lens"
    ]
