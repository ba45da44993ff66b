"""The paper's experiments, one call each."""

from extractive_lens.experiments.ocr import OCRResult, verify_ocr

__all__ = ["OCRResult", "verify_ocr"]
