"""Experiment configurations: read YAML / JSON files, parse ``KEY=VALUE`` overrides, check keys.

A configuration is a flat mapping of an experiment's keyword arguments (``registry.EXPERIMENTS``
lists each experiment's keys and defaults), e.g. ``{"lr": 1e-4, "epochs": 8, "seed": 0}``.
A sweep configuration holds ``experiment``, ``grid`` (key -> list of values) and optionally
``fixed`` (key -> value)::

    experiment: ocr
    grid: {lr: [3.0e-5, 1.0e-4, 3.0e-4], seed: [0, 1, 2], dataset: [first_hop, second_hop]}
    fixed: {epochs: 8}

YAML note: plain PyYAML reads ``1e-4`` (no dot) as a string; here it is a float, and values are
also converted to the type of the key's default, so ``1e-4``, ``1.0e-4`` and ``"1e-4"`` all work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_FLOAT = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
    r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


def _yaml_load(text: str) -> Any:
    """``yaml.safe_load`` that also reads ``1e-4`` as a float (YAML 1.2 style)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a configuration mapping from a ``.json``, ``.yaml`` or ``.yml`` file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON: {err}") from err
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = _yaml_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: invalid YAML: {err}") from err
    else:
        raise ValueError(f"{path}: config files must end in .json, .yaml or .yml")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping, not {type(data).__name__}")
    return data


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["lr=1e-4", "orders=[joint]"]`` -> ``{"lr": 1e-4, "orders": ["joint"]}`` (YAML values)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = _yaml_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"--set {item!r}: cannot parse the value: {err}") from err
    return out


def coerce(key: str, value: Any, default: Any) -> Any:
    """Convert ``value`` to the type of ``default`` where that is unambiguous; else check it."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"config key {key!r} must be true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool):
            raise ValueError(f"config key {key!r} must be an integer, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config key {key!r} must be an integer, got {value!r}") from None
        if number != int(number):
            raise ValueError(f"config key {key!r} must be an integer, got {value!r}")
        return int(number)
    if isinstance(default, float):
        if isinstance(value, bool):
            raise ValueError(f"config key {key!r} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config key {key!r} must be a number, got {value!r}") from None
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"config key {key!r} must be a string, got {value!r}")
        return value
    if isinstance(default, list | tuple):
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list | tuple):
            raise ValueError(f"config key {key!r} must be a list, got {value!r}")
        return list(value)
    return value


def check_config(
    experiment: str, config: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """The full configuration: ``defaults`` updated with ``config`` (types coerced).

    Raises ``ValueError`` naming every unknown key and the allowed ones.
    """
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown config keys for experiment {experiment!r}: {unknown}; "
            f"allowed: {sorted(defaults)}"
        )
    out = dict(defaults)
    for key, value in config.items():
        out[key] = coerce(key, value, defaults[key])
    return out
