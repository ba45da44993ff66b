"""OCR finetune recipes for the world experiments: which weights, learning rate, epochs.

:func:`finetune_ocr` runs the library's OCR experiment (``verify_ocr``: Adam, constant lr,
answer-token loss, block linear weights) with one recipe; the curriculum experiment and the
ablation check both finetune through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extractive_lens.data import OCRDataset
from extractive_lens.experiments.ocr import OCRResult, verify_ocr


@dataclass(frozen=True)
class FinetuneSpec:
    """One OCR finetune recipe (Adam, constant lr, answer-token loss, batch 8)."""

    name: str
    lr: float = 1e-3
    epochs: int = 10
    paraphrases: bool = True
    """Also train the facts in the relation's other templates (``verify_ocr(paraphrases=True)``)."""
    layers: str | None = None
    """``None``: all block linear weights (the paper's protocol); ``"early"`` / ``"late"``: only
    the first / second half of the layers."""

    def trainable(self, n_layers: int) -> list[int] | None:
        half = n_layers // 2
        return {None: None, "early": list(range(half)), "late": list(range(half, n_layers))}[
            self.layers
        ]


def finetune_ocr(model: Any, dataset: OCRDataset, spec: FinetuneSpec) -> OCRResult:
    """``verify_ocr`` on ``dataset`` with the recipe ``spec`` (no progress bar)."""
    return verify_ocr(
        model,
        dataset,
        lr=spec.lr,
        epochs=spec.epochs,
        paraphrases=spec.paraphrases,
        trainable=spec.trainable(int(model.cfg.n_layers)),
        progress=False,
    )
