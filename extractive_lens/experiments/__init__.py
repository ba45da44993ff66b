"""The paper's experiments, one call each (docs/method.md §5).

Each takes its settings as one frozen configuration (``settings``: ``OCRConfig``, ...) or as
keywords overriding its fields, and returns a result meeting ``protocol.ExperimentResult``:
``table()``, ``figure()`` (plotly), ``summary()`` (flat metrics for sweeps), ``to_dict()``,
``from_dict()`` and ``save(out_dir)``; ``load_result`` reads any saved result back, and ``sweep``
runs any experiment over a grid, resumably.
"""

from extractive_lens.experiments.cluster import make_executor
from extractive_lens.experiments.faithfulness import FaithfulnessResult, faithfulness
from extractive_lens.experiments.freezing import FreezingResult, layer_freezing
from extractive_lens.experiments.grafting import (
    GraftResult,
    weight_grafting,
    weight_grafting_heldout_variant,
)
from extractive_lens.experiments.localisation import (
    LocalisationResult,
    graft_localisation,
    graft_localisation_counterfactual_variant,
)
from extractive_lens.experiments.ocr import OCRResult, verify_ocr
from extractive_lens.experiments.ordering import OrderingResult, data_ordering
from extractive_lens.experiments.protocol import ExperimentResult
from extractive_lens.experiments.registry import (
    EXPERIMENTS,
    Experiment,
    get_experiment,
    load_result,
)
from extractive_lens.experiments.settings import (
    FaithfulnessConfig,
    FreezingConfig,
    GraftingConfig,
    GraftingVariantConfig,
    LocalisationConfig,
    LocalisationVariantConfig,
    OCRConfig,
    OrderingConfig,
    TrainConfig,
)
from extractive_lens.experiments.sweep import SweepResult, load_sweep, sweep

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "ExperimentResult",
    "FaithfulnessConfig",
    "FaithfulnessResult",
    "FreezingConfig",
    "FreezingResult",
    "GraftResult",
    "GraftingConfig",
    "GraftingVariantConfig",
    "LocalisationConfig",
    "LocalisationResult",
    "LocalisationVariantConfig",
    "OCRConfig",
    "OCRResult",
    "OrderingConfig",
    "OrderingResult",
    "SweepResult",
    "TrainConfig",
    "data_ordering",
    "faithfulness",
    "get_experiment",
    "graft_localisation",
    "graft_localisation_counterfactual_variant",
    "layer_freezing",
    "load_result",
    "load_sweep",
    "make_executor",
    "sweep",
    "verify_ocr",
    "weight_grafting",
    "weight_grafting_heldout_variant",
]
