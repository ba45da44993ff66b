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
from extractive_lens.experiments import OCRResult, verify_ocr
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
from extractive_lens.training import FinetuneResult, finetune

__version__ = "0.1.0"

__all__ = [
    "Component",
    "Example",
    "FinetuneResult",
    "ModelLoadError",
    "OCRDataset",
    "OCRResult",
    "ParamSlice",
    "Split",
    "UnsupportedModelError",
    "WeightDelta",
    "components",
    "daxwug",
    "encode",
    "finetune",
    "first_hop",
    "get_dataset",
    "kv_group",
    "load_dataset_file",
    "load_model",
    "load_tokenizer",
    "logit_margin",
    "mean_rank",
    "model_identity",
    "named_parameters",
    "option_logits",
    "ranks",
    "save_dataset_file",
    "save_model",
    "second_hop",
    "tiny_model",
    "unowned_parameters",
    "validate",
    "verify_ocr",
]
