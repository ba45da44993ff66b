"""The experiments by name, with their configuration keys and defaults (for sweeps and the CLI).

The keys and defaults are those of each experiment's configuration class (``settings``); a
configuration here is that class's fields as a JSON-able mapping.

>>> from extractive_lens.experiments.registry import EXPERIMENTS
>>> sorted(EXPERIMENTS)
['freezing', 'grafting', 'localisation', 'ocr', 'ordering']
>>> EXPERIMENTS["ocr"].defaults["lr"]
0.0001

Each ``Experiment`` runs from a JSON-able configuration (dataset *names*, numbers, lists), so a
configuration can live in a file, be hashed, and be sent to another process or machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.experiments.config import check_config
from extractive_lens.experiments.settings import (
    FreezingConfig,
    GraftingConfig,
    LocalisationConfig,
    OCRConfig,
    OrderingConfig,
    Settings,
)


@dataclass(frozen=True)
class Experiment:
    """One experiment: ``run(model, config, progress)`` returns its result object.

    Attributes:
        name: the registry key (also the CLI name).
        run: called with the model, the full configuration and ``progress``.
        defaults: every configuration key with its default value (for the paper's experiments
            ``settings.registry_defaults()``).
        description: one line for ``--help``.
        settings: the experiment's configuration class (``settings``), whose ``describe()``
            documents each key; None for an experiment defined by its defaults alone.
    """

    name: str
    run: Callable[[TransformerBridge, dict[str, Any], bool], Any] = field(repr=False)
    defaults: Mapping[str, Any]
    description: str = ""
    settings: type[Settings] | None = field(default=None, repr=False)

    def help(self) -> dict[str, str]:
        """Configuration key -> its documentation (empty without ``settings``)."""
        if self.settings is None:
            return {}
        return {name: doc for name, _, doc in self.settings.describe() if name in self.defaults}

    def config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The full configuration: the defaults updated with ``overrides`` (keys checked)."""
        return check_config(self.name, overrides or {}, self.defaults)

    def __call__(
        self,
        model: TransformerBridge,
        config: Mapping[str, Any] | None = None,
        progress: bool = False,
    ) -> Any:
        return self.run(model, self.config(config), progress)


def summarize(result: Any) -> dict[str, float]:
    """Flat ``name -> number`` metrics of any experiment result (what sweeps aggregate)."""
    return dict(result.summary())


def result_table(result: Any) -> list[dict[str, Any]]:
    """The rows a sweep records for one run: ``seed_rows()`` where the result has them (the
    ``ResultMixin`` default is its ``table()``; OCR's is its final row), else ``table()``."""
    rows = getattr(result, "seed_rows", None)
    return rows() if rows is not None else result.table()


def _ocr(model: TransformerBridge, c: dict[str, Any], progress: bool) -> Any:
    from extractive_lens.data import get_dataset
    from extractive_lens.experiments.ocr import verify_ocr

    config = OCRConfig(**c)
    dataset = get_dataset(config.dataset, seed=config.data_seed)
    return verify_ocr(model, dataset, config=config, progress=progress)


def _runner(module: str, function: str, config_class: type[Settings]) -> Callable[..., Any]:
    """``run(model, config, progress)`` of an experiment function that reads its dataset(s) from
    its configuration (``extractive_lens.experiments.<module>.<function>``, imported when run)."""

    def run(model: TransformerBridge, c: dict[str, Any], progress: bool) -> Any:
        import importlib

        fn = getattr(importlib.import_module(f"extractive_lens.experiments.{module}"), function)
        return fn(model, config=config_class(**c), progress=progress)

    return run


EXPERIMENTS: dict[str, Experiment] = {
    "ocr": Experiment(
        "ocr",
        _ocr,
        OCRConfig.registry_defaults(),
        "finetune on facts, measure implications against the control (docs/method.md 5.1)",
        OCRConfig,
    ),
    "freezing": Experiment(
        "freezing",
        _runner("freezing", "layer_freezing", FreezingConfig),
        FreezingConfig.registry_defaults(),
        "layer freezing: early/late deltas reverted or frozen (docs/method.md 5.3)",
        FreezingConfig,
    ),
    "ordering": Experiment(
        "ordering",
        _runner("ordering", "data_ordering", OrderingConfig),
        OrderingConfig.registry_defaults(),
        "dax/wug/zong data ordering, then finetuning on held-out facts (docs/method.md 5.4)",
        OrderingConfig,
    ),
    "grafting": Experiment(
        "grafting",
        _runner("grafting", "weight_grafting", GraftingConfig),
        GraftingConfig.registry_defaults(),
        "weight grafting of Delta_{F,I(F)} onto counterfactual facts (docs/method.md 5.5, 7)",
        GraftingConfig,
    ),
    "localisation": Experiment(
        "localisation",
        _runner("localisation", "graft_localisation", LocalisationConfig),
        LocalisationConfig.registry_defaults(),
        "graft informative scores vs OCR downstream scores of new names (docs/method.md 5.6, 7)",
        LocalisationConfig,
    ),
}


def get_experiment(experiment: str | Experiment) -> Experiment:
    """An ``Experiment`` by name (or as given)."""
    if isinstance(experiment, Experiment):
        return experiment
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose from {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[experiment]


def is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def result_types() -> dict[str, type]:
    """The result class of each saved ``"experiment"`` name."""
    from extractive_lens.experiments.faithfulness import FaithfulnessResult
    from extractive_lens.experiments.freezing import FreezingResult
    from extractive_lens.experiments.grafting import GraftResult
    from extractive_lens.experiments.localisation import LocalisationResult
    from extractive_lens.experiments.ocr import OCRResult
    from extractive_lens.experiments.ordering import OrderingResult

    return {
        "ocr": OCRResult,
        "freezing": FreezingResult,
        "ordering": OrderingResult,
        "grafting": GraftResult,
        "localisation": LocalisationResult,
        "faithfulness": FaithfulnessResult,
    }


def load_result(out_dir: str | Path) -> Any:
    """Any experiment's result saved in ``out_dir``, rebuilt by its class's ``load`` (its
    ``from_dict``, plus what a class saves beside ``results.json``, e.g. OCR's delta)."""
    from extractive_lens.experiments.protocol import read_results

    data = read_results(out_dir)
    types = result_types()
    if data.get("experiment") not in types:
        raise ValueError(
            f"{out_dir}/results.json is from experiment {data.get('experiment')!r}; "
            f"load_result reads {sorted(types)}"
        )
    return types[data["experiment"]].load(out_dir)
