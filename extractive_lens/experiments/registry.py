"""The experiments by name, with their configuration keys and defaults (for sweeps and the CLI).

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
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.experiments.config import check_config

_TRAIN = {"lr": 1e-4, "epochs": 8, "batch_size": 8, "seed": 0, "data_seed": 0}


@dataclass(frozen=True)
class Experiment:
    """One experiment: ``run(model, config, progress)`` returns its result object.

    Attributes:
        name: the registry key (also the CLI name).
        run: called with the model, the full configuration and ``progress``.
        defaults: every configuration key with its default value.
        description: one line for ``--help``.
    """

    name: str
    run: Callable[[TransformerBridge, dict[str, Any], bool], Any] = field(repr=False)
    defaults: Mapping[str, Any]
    description: str = ""

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
    if hasattr(result, "summary"):
        return dict(result.summary())
    if hasattr(result, "final") and hasattr(result, "ocr_effect"):  # OCRResult
        out = dict(result.final())
        effect, se = result.ocr_effect()
        out["ocr_effect"], out["ocr_effect_se"] = effect, se
        out.update({f"precheck/{k}": v for k, v in result.precheck.items()})
        return out
    raise TypeError(f"cannot summarize a {type(result).__name__}")


def result_table(result: Any) -> list[dict[str, Any]]:
    """The result's table, for OCR the final row (facts / implications / control)."""
    if type(result).__name__ == "OCRResult":
        final = result.final()
        effect, se = result.ocr_effect()
        return [{"dataset": result.dataset, **final, "ocr effect": effect, "ocr effect se": se}]
    return result.table()


def _ocr(model: TransformerBridge, c: dict[str, Any], progress: bool) -> Any:
    from extractive_lens.data import get_dataset
    from extractive_lens.experiments.ocr import verify_ocr

    return verify_ocr(
        model,
        get_dataset(c["dataset"], seed=c["data_seed"]),
        lr=c["lr"],
        epochs=c["epochs"],
        batch_size=c["batch_size"],
        seed=c["seed"],
        paraphrases=c["paraphrases"],
        progress=progress,
    )


def _freezing(model: TransformerBridge, c: dict[str, Any], progress: bool) -> Any:
    from extractive_lens.experiments.freezing import layer_freezing

    return layer_freezing(model, progress=progress, **c)


def _ordering(model: TransformerBridge, c: dict[str, Any], progress: bool) -> Any:
    from extractive_lens.experiments.ordering import data_ordering

    return data_ordering(model, progress=progress, **c)


def _grafting(model: TransformerBridge, c: dict[str, Any], progress: bool) -> Any:
    from extractive_lens.experiments.grafting import weight_grafting

    return weight_grafting(model, progress=progress, **c)


def _localisation(model: TransformerBridge, c: dict[str, Any], progress: bool) -> Any:
    from extractive_lens.experiments.localisation import graft_localisation

    return graft_localisation(model, progress=progress, **c)


EXPERIMENTS: dict[str, Experiment] = {
    "ocr": Experiment(
        "ocr",
        _ocr,
        {"dataset": "first_hop", **_TRAIN, "paraphrases": False},
        "finetune on facts, measure implications against the control (docs/method.md 5.1)",
    ),
    "freezing": Experiment(
        "freezing",
        _freezing,
        {
            "datasets": ["first_hop", "second_hop"],
            "early_fraction": 0.75,
            **_TRAIN,
            "paraphrases": False,
            "track": True,
        },
        "layer freezing: early/late deltas reverted or frozen (docs/method.md 5.3)",
    ),
    "ordering": Experiment(
        "ordering",
        _ordering,
        {
            "dataset": "daxwug",
            "orders": ["joint", "facts_first", "implications_first"],
            **_TRAIN,
            "finetune_epochs": None,
            "track_train": None,
        },
        "dax/wug/zong data ordering, then finetuning on held-out facts (docs/method.md 5.4)",
    ),
    "grafting": Experiment(
        "grafting",
        _grafting,
        {"dataset": "daxwug_paper", **_TRAIN, "n_train": None},
        "weight grafting of Delta_{F,I(F)} onto counterfactual facts (docs/method.md 5.5, 7)",
    ),
    "localisation": Experiment(
        "localisation",
        _localisation,
        {"dataset": "daxwug_paper", **_TRAIN, "n_train": None},
        "graft informative scores vs OCR downstream scores of new names (docs/method.md 5.6, 7)",
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
