"""Datasets as JSON Lines files: :func:`load_dataset_file` and :func:`save_dataset_file`.

- an optional **header** as the first line: an object with ``"name"`` (required in a header) and
  optionally ``"seed"`` (int), ``"description"`` (str), ``"fact_paraphrases"`` (list of templates
  with ``{}``), ``"options"`` (split name -> list of options) and ``"descriptions"`` (split name ->
  str);
- then one **example** per line: ``{"split": ..., "prompt": ..., "answer": ...}`` with optional
  ``"entity"`` and ``"template"`` (both strings or null). ``"split"`` is ``"facts"``,
  ``"implications"`` or any other split name; ``facts`` and ``implications`` must both occur.

A split without options in the header is ranked against the sorted unique answers of that split.
Blank lines are skipped; unknown keys are errors (they are usually typos).

For example::

    {"name": "tiny", "options": {"facts": ["Paris", "Rome"], "implications": ["French", "Italian"]}}
    {"split": "facts", "prompt": "Ann Lee lives in", "answer": "Paris", "entity": "Ann Lee"}
    {"split": "implications", "prompt": "Ann Lee speaks", "answer": "French"}
    {"split": "facts", "prompt": "Bo Ng lives in", "answer": "Rome", "template": null}
    {"split": "implications", "prompt": "Bo Ng speaks", "answer": "Italian"}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from extractive_lens.data.types import FACTS, IMPLICATIONS, Example, OCRDataset, Split

_HEADER_KEYS = {"name", "seed", "description", "fact_paraphrases", "options", "descriptions"}
_EXAMPLE_KEYS = {"split", "prompt", "answer", "entity", "template"}


def load_dataset_file(path: str | Path) -> OCRDataset:
    """Read a dataset from a JSON Lines file (schema in the module docstring).

    Raises ``ValueError`` naming the file and line for malformed lines, and for a file without
    ``facts`` or ``implications`` examples.
    """
    path = Path(path)
    header: dict[str, Any] = {}
    by_split: dict[str, list[Example]] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            if "split" not in record and "name" in record:
                if header or by_split:
                    raise ValueError(f"{where}: a header line is only allowed as the first line")
                header = _parse_header(record, where)
                continue
            split, example = _parse_example(record, where)
            by_split.setdefault(split, []).append(example)
    return _assemble(path, header, by_split)


def _parse_header(record: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(record) - _HEADER_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown header keys {unknown}; allowed: {sorted(_HEADER_KEYS)}")
    if not isinstance(record["name"], str):
        raise ValueError(f"{where}: header 'name' must be a string")
    if not isinstance(record.get("seed", 0), int) or isinstance(record.get("seed"), bool):
        raise ValueError(f"{where}: header 'seed' must be an integer")
    if not isinstance(record.get("description", ""), str):
        raise ValueError(f"{where}: header 'description' must be a string")
    if not _is_str_list(record.get("fact_paraphrases", [])):
        raise ValueError(f"{where}: header 'fact_paraphrases' must be a list of strings")
    for key, check, kind in (
        ("options", _is_str_list, "a list of strings"),
        ("descriptions", lambda v: isinstance(v, str), "a string"),
    ):
        value = record.get(key, {})
        if not isinstance(value, dict):
            raise ValueError(f"{where}: header {key!r} must map split names to {kind}")
        for split, entry in value.items():
            if not check(entry):
                raise ValueError(f"{where}: header {key!r} of split {split!r} must be {kind}")
    return record


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _parse_example(record: dict[str, Any], where: str) -> tuple[str, Example]:
    missing = [k for k in ("split", "prompt", "answer") if k not in record]
    if missing:
        raise ValueError(f"{where}: missing required keys {missing}")
    unknown = sorted(set(record) - _EXAMPLE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed: {sorted(_EXAMPLE_KEYS)}")
    for key in ("split", "prompt", "answer"):
        if not isinstance(record[key], str):
            raise ValueError(f"{where}: {key!r} must be a string, got {record[key]!r}")
    for key in ("entity", "template"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise ValueError(f"{where}: {key!r} must be a string or null, got {record[key]!r}")
    if not record["split"]:
        raise ValueError(f"{where}: 'split' must not be empty")
    try:
        example = Example(
            record["prompt"], record["answer"], record.get("entity"), record.get("template")
        )
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return record["split"], example


def _assemble(path: Path, header: dict[str, Any], by_split: dict[str, list[Example]]) -> OCRDataset:
    missing = [s for s in (FACTS, IMPLICATIONS) if s not in by_split]
    if missing:
        raise ValueError(f"{path}: no examples for the required split(s) {missing}")
    options = header.get("options", {})
    orphans = sorted(set(options) - set(by_split))
    if orphans:
        raise ValueError(f"{path}: header gives options for splits without examples: {orphans}")
    descriptions = header.get("descriptions", {})

    def options_of(split: str) -> tuple[str, ...]:
        if split in options:
            return tuple(options[split])
        return tuple(sorted({e.answer for e in by_split[split]}))

    extra = tuple(
        Split(name, tuple(examples), options_of(name), descriptions.get(name, ""))
        for name, examples in by_split.items()
        if name not in (FACTS, IMPLICATIONS)
    )
    try:
        return OCRDataset(
            name=header.get("name", path.stem),
            facts=tuple(by_split[FACTS]),
            implications=tuple(by_split[IMPLICATIONS]),
            fact_options=options_of(FACTS),
            implication_options=options_of(IMPLICATIONS),
            seed=header.get("seed", 0),
            extra=extra,
            fact_paraphrases=tuple(header.get("fact_paraphrases", ())),
            description=header.get("description", ""),
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def save_dataset_file(dataset: OCRDataset, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``dataset`` as JSON Lines (header with all option sets, then one example per line).

    :func:`load_dataset_file` reads it back to an equal dataset. Raises ``FileExistsError`` if
    ``path`` exists, unless ``overwrite=True``. Returns the path.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    records = dataset._split_records()
    header = {
        "name": dataset.name,
        "seed": dataset.seed,
        "description": dataset.description,
        "fact_paraphrases": list(dataset.fact_paraphrases),
        "options": {name: list(s.options) for name, s in records.items()},
        "descriptions": {s.name: s.description for s in dataset.extra if s.description},
    }
    lines = [json.dumps(header, ensure_ascii=False)]
    for name, split in records.items():
        for ex in split.examples:
            record: dict[str, Any] = {"split": name, "prompt": ex.prompt, "answer": ex.answer}
            if ex.entity is not None:
                record["entity"] = ex.entity
            if ex.template is not None:
                record["template"] = ex.template
            lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
