"""The paper's experiments, one call each (METHOD.md §5).

Each returns a frozen result with ``table()``, ``figure()`` (plotly), ``summary()`` (flat metrics
for sweeps), ``to_dict()`` and ``save(out_dir)``; ``sweep`` runs any of them over a grid, resumably.
"""

from extractive_lens.experiments.cluster import make_executor
from extractive_lens.experiments.freezing import FreezingResult, layer_freezing
from extractive_lens.experiments.grafting import GraftResult, weight_grafting
from extractive_lens.experiments.localisation import LocalisationResult, graft_localisation
from extractive_lens.experiments.ocr import OCRResult, verify_ocr
from extractive_lens.experiments.ordering import OrderingResult, data_ordering
from extractive_lens.experiments.registry import EXPERIMENTS, Experiment, get_experiment
from extractive_lens.experiments.sweep import SweepResult, load_sweep, sweep

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "FreezingResult",
    "GraftResult",
    "LocalisationResult",
    "OCRResult",
    "OrderingResult",
    "SweepResult",
    "data_ordering",
    "get_experiment",
    "graft_localisation",
    "layer_freezing",
    "load_sweep",
    "make_executor",
    "sweep",
    "verify_ocr",
    "weight_grafting",
]
