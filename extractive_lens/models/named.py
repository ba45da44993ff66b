"""Model names that ``load_model`` resolves to a loader, and the error every failed load raises.

A package makes its models loadable by name in either of two ways:

- when it is imported: ``register_named_model("my-model", loader)``, where
  ``loader(name, *, device, dtype)`` returns a ``TransformerBridge``;
- without being imported first: an entry point in the group ``extractive_lens.models`` whose name
  is the model name, or a prefix of the names it provides, and whose value is a function that
  registers them. ``extractive_lens`` declares its own world models this way::

      [project.entry-points."extractive_lens.models"]
      "world-" = "extractive_lens.worlds:register_models"

:func:`named_model_loader` consults the entry points only for a name not registered yet, and runs
only those whose name is a prefix of it; so loading a directory or a hub id imports no provider,
and this module imports nothing of the package above it.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Protocol

from transformer_lens.model_bridge import TransformerBridge

ENTRY_POINT_GROUP = "extractive_lens.models"


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says how to load it instead."""


class NamedLoader(Protocol):
    """Loads the model registered under ``name`` as a ``TransformerBridge`` in eval mode."""

    def __call__(self, name: str, *, device: Any = None, dtype: Any = None) -> TransformerBridge:
        """``device`` and ``dtype`` as for ``load_model`` (``None``: the loader's default)."""
        ...


_LOADERS: dict[str, NamedLoader] = {}


def register_named_model(name: str, loader: NamedLoader) -> None:
    """Make ``load_model(name)`` return ``loader(name, device=..., dtype=...)``.

    A later registration under the same name replaces the earlier one.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a named model needs a non-empty string name, got {name!r}")
    if not callable(loader):
        raise TypeError(f"the loader for {name!r} must be callable, got {loader!r}")
    _LOADERS[name] = loader


def named_model_loader(name: str) -> NamedLoader | None:
    """The loader registered under ``name``, or ``None`` if nothing provides that name.

    An unregistered name first runs every provider (entry point) whose name is a prefix of it.
    """
    if name not in _LOADERS:
        for provider in _providers():
            if name.startswith(provider.name):
                _run(provider)
    return _LOADERS.get(name)


def named_models() -> tuple[str, ...]:
    """The registered names, then ``"<prefix>*"`` for each provider of further names."""
    prefixes = dict.fromkeys(f"{p.name}*" for p in _providers())
    return (*sorted(_LOADERS), *prefixes)


def load_named_model(name: str, *, device: Any = None, dtype: Any = None) -> TransformerBridge:
    """The model registered under ``name``; ``ModelLoadError`` naming the known names if none."""
    loader = named_model_loader(name)
    if loader is None:
        raise ModelLoadError(f"no model is registered under the name {name!r}. " + how_to_name())
    return loader(name, device=device, dtype=dtype)


def how_to_name() -> str:
    """The known names, and how to add one (for error messages)."""
    return (
        f"Named models: {', '.join(named_models())}. To add one, call "
        "extractive_lens.models.register_named_model(name, loader), or declare an entry point "
        f"in the group {ENTRY_POINT_GROUP!r} that registers it."
    )


def _providers() -> list[metadata.EntryPoint]:
    # The package's own world models come this way too (pyproject.toml declares them), so
    # models imports nothing above it; an install older than that declaration needs
    # ``pip install -e .`` again.
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _run(provider: metadata.EntryPoint) -> None:
    try:
        register = provider.load()
    except (ImportError, AttributeError) as err:
        raise ModelLoadError(
            f"the named-model provider {provider.value!r} (entry point {provider.name!r} in "
            f"{ENTRY_POINT_GROUP!r}) cannot be imported: {err}"
        ) from err
    register()
