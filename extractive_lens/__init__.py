"""extractive_lens: which parts of a language model let it answer the implications of new facts.

A re-implementation, on TransformerLens's ``TransformerBridge``, of "Extractive Structures Learned
in Pretraining Enable Generalization on Finetuned Facts" (Feng, Russell, Steinhardt).

>>> from extractive_lens import tiny_model, first_hop, verify_ocr
>>> model = tiny_model()                      # or load_model() for SmolLM2-135M, offline
>>> result = verify_ocr(model, first_hop(), lr=3e-3, epochs=1, progress=False)
>>> sorted(result.final())
['control_implications', 'facts', 'implications']
"""

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
)
from extractive_lens.delta import WeightDelta
from extractive_lens.demo import DemoResult, run_demo
from extractive_lens.experiments import (
    OCRResult,
    data_ordering,
    faithfulness,
    graft_localisation,
    layer_freezing,
    sweep,
    verify_ocr,
    weight_grafting,
)
from extractive_lens.graph import ExtractiveGraph, extractive_graph
from extractive_lens.metrics import encode, logit_margin, mean_rank, option_logits, ranks
from extractive_lens.models import (
    ModelLoadError,
    load_model,
    load_tokenizer,
    model_identity,
    named_parameters,
    save_model,
    tiny_model,
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
from extractive_lens.training import FinetuneResult, finetune
from extractive_lens.worlds import WorldConfig, load_world_model, make_world

__version__ = "0.1.0"

__all__ = [
    "Component",
    "ComponentScores",
    "DemoResult",
    "Example",
    "ExtractiveGraph",
    "ExtractiveScores",
    "FinetuneResult",
    "ModelLoadError",
    "OCRDataset",
    "OCRResult",
    "ParamSlice",
    "Split",
    "UnsupportedModelError",
    "WeightDelta",
    "WorldConfig",
    "components",
    "data_ordering",
    "daxwug",
    "downstream_scores",
    "encode",
    "extractive_graph",
    "extractive_scores",
    "faithfulness",
    "finetune",
    "first_hop",
    "get_dataset",
    "graft_localisation",
    "graph_figure",
    "head_drilldown",
    "informative_scores",
    "kv_group",
    "layer_freezing",
    "load_dataset_file",
    "load_model",
    "load_tokenizer",
    "load_world_model",
    "logit_margin",
    "make_world",
    "mean_rank",
    "model_identity",
    "named_parameters",
    "ocr_curves",
    "option_logits",
    "ranks",
    "report",
    "run_demo",
    "save_dataset_file",
    "save_figures",
    "save_model",
    "score_heatmaps",
    "second_hop",
    "sweep",
    "tiny_model",
    "unowned_parameters",
    "upstream_scores",
    "validate",
    "verify_ocr",
    "weight_grafting",
]
