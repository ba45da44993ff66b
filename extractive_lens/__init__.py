"""extractive_lens: which parts of a language model let it answer the implications of new facts.

A re-implementation, on TransformerLens's ``TransformerBridge``, of "Extractive Structures Learned
in Pretraining Enable Generalization on Finetuned Facts" (Feng, Russell, Steinhardt).

>>> from extractive_lens import tiny_model, first_hop, verify_ocr
>>> model = tiny_model()                      # or load_model() for SmolLM2-135M, offline
>>> result = verify_ocr(model, first_hop(), lr=3e-3, epochs=1, progress=False)
>>> sorted(result.final())
['control_implications', 'facts', 'implications']

Names are imported on first use (PEP 562), so ``import extractive_lens`` stays light: plotly,
networkx, scipy and the experiment modules load only when something that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Component": "components",
    "components": "components",
    "kv_group": "components",
    "ParamSlice": "components",
    "unowned_parameters": "components",
    "UnsupportedModelError": "components",
    "daxwug": "data",
    "Example": "data",
    "first_hop": "data",
    "get_dataset": "data",
    "load_dataset_file": "data",
    "OCRDataset": "data",
    "save_dataset_file": "data",
    "second_hop": "data",
    "Split": "data",
    "validate": "data",
    "with_control": "data",
    "WeightDelta": "delta",
    "DemoResult": "demo",
    "run_demo": "demo",
    "data_ordering": "experiments",
    "faithfulness": "experiments",
    "graft_localisation": "experiments",
    "layer_freezing": "experiments",
    "OCRConfig": "experiments",
    "OCRResult": "experiments",
    "TrainConfig": "experiments",
    "load_result": "experiments",
    "sweep": "experiments",
    "verify_ocr": "experiments",
    "weight_grafting": "experiments",
    "extractive_graph": "graph",
    "ExtractiveGraph": "graph",
    "count_cooccurrences": "memorization",
    "CountTable": "memorization",
    "memorization": "memorization",
    "MemorizationResult": "memorization",
    "rank_correlation": "memorization",
    "read_documents": "memorization",
    "encode": "metrics",
    "logit_margin": "metrics",
    "mean_rank": "metrics",
    "option_logits": "metrics",
    "ranks": "metrics",
    "load_model": "models",
    "register_named_model": "models",
    "hooked_run": "hooking",
    "load_tokenizer": "models",
    "model_identity": "models",
    "ModelLoadError": "models",
    "named_parameters": "models",
    "save_model": "models",
    "tiny_model": "models",
    "weights_fingerprint": "models",
    "graph_figure": "plots",
    "head_drilldown": "plots",
    "ocr_curves": "plots",
    "score_heatmaps": "plots",
    "report": "report",
    "save_figures": "report",
    "ComponentScores": "scores",
    "downstream_scores": "scores",
    "extractive_scores": "scores",
    "ExtractiveScores": "scores",
    "informative_scores": "scores",
    "upstream_scores": "scores",
    "model_structure": "structure",
    "ModelStructure": "structure",
    "heuristic_core": "subnetworks",
    "MaskConfig": "subnetworks",
    "SubnetworkResult": "subnetworks",
    "DivergedError": "training",
    "finetune": "training",
    "FinetuneResult": "training",
    "load_world_model": "worlds",
    "make_world": "worlds",
    "WorldConfig": "worlds",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'extractive_lens' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"extractive_lens.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from extractive_lens.components import (
        Component,
        ParamSlice,
        UnsupportedModelError,
        components,
        kv_group,
        unowned_parameters,
    )
    from extractive_lens.data import (
        Example,
        OCRDataset,
        Split,
        daxwug,
        first_hop,
        get_dataset,
        load_dataset_file,
        save_dataset_file,
        second_hop,
        validate,
        with_control,
    )
    from extractive_lens.delta import WeightDelta
    from extractive_lens.demo import DemoResult, run_demo
    from extractive_lens.experiments import (
        OCRConfig,
        OCRResult,
        TrainConfig,
        data_ordering,
        faithfulness,
        graft_localisation,
        layer_freezing,
        load_result,
        sweep,
        verify_ocr,
        weight_grafting,
    )
    from extractive_lens.graph import ExtractiveGraph, extractive_graph
    from extractive_lens.hooking import hooked_run
    from extractive_lens.memorization import (
        CountTable,
        MemorizationResult,
        count_cooccurrences,
        memorization,
        rank_correlation,
        read_documents,
    )
    from extractive_lens.metrics import encode, logit_margin, mean_rank, option_logits, ranks
    from extractive_lens.models import (
        ModelLoadError,
        load_model,
        load_tokenizer,
        model_identity,
        named_parameters,
        register_named_model,
        save_model,
        tiny_model,
        weights_fingerprint,
    )
    from extractive_lens.plots import graph_figure, head_drilldown, ocr_curves, score_heatmaps
    from extractive_lens.report import report, save_figures
    from extractive_lens.scores import (
        ComponentScores,
        ExtractiveScores,
        downstream_scores,
        extractive_scores,
        informative_scores,
        upstream_scores,
    )
    from extractive_lens.structure import ModelStructure, model_structure
    from extractive_lens.subnetworks import MaskConfig, SubnetworkResult, heuristic_core
    from extractive_lens.training import DivergedError, FinetuneResult, finetune
    from extractive_lens.worlds import WorldConfig, load_world_model, make_world
