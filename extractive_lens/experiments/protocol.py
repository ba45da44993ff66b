"""What every experiment result offers, and reading any saved result back.

Every result (``OCRResult``, ``FreezingResult``, ``OrderingResult``, ``GraftResult``,
``LocalisationResult``, ``FaithfulnessResult``) meets :class:`ExperimentResult`: ``table()``
(rows of plain values), ``summary()`` (flat ``name -> number`` metrics, what a sweep aggregates),
``figure()`` (plotly), ``to_dict()`` (JSON-able, what ``save`` writes as ``results.json``),
``from_dict()`` (the result rebuilt from ``to_dict()``; trained deltas are not in it) and
``save(out_dir)``. So sweeps, the registry and the CLI treat every result alike, and
:func:`extractive_lens.experiments.registry.load_result` reloads any of them from disk.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable


@runtime_checkable
class ExperimentResult(Protocol):
    """The protocol of an experiment's result (module doc)."""

    def table(self) -> list[dict[str, Any]]: ...

    def summary(self) -> dict[str, float]: ...

    def figure(self) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self: ...

    def save(self, out_dir: str | Path, overwrite: bool = False) -> Path: ...


class ResultMixin:
    """Shared parts of the protocol for result dataclasses: ``seed_rows`` (what a sweep averages
    over seeds: the table unless a result says otherwise), ``from_dict`` and ``load`` (a saved
    directory back into a result)."""

    def seed_rows(self) -> list[dict[str, Any]]:
        """The rows a sweep records per run and averages over seeds (``SweepResult.seed_table``)."""
        return self.table()  # type: ignore[attr-defined]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The result ``to_dict`` described: each dataclass field read from its key (tuples
        rebuilt from JSON lists); what ``to_dict`` leaves out (the deltas) takes its default."""
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                value = data[f.name]
                values[f.name] = tuple(value) if str(f.type).startswith("tuple") else value
        return cls(**values)

    @classmethod
    def load(cls, out_dir: str | Path) -> Self:
        """The result saved in ``out_dir`` (its ``results.json``)."""
        return cls.from_dict(read_results(out_dir))  # type: ignore[attr-defined]


def read_results(out_dir: str | Path) -> dict[str, Any]:
    """The ``results.json`` of a saved result directory."""
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        raise ValueError(f"{out_dir} holds no results.json: is it a saved experiment result?")
    return json.loads(path.read_text())
