"""The configurations of a pretraining run: the model's shape and the optimiser's settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the Llama-style model."""

    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512

    def hf_config(self, tokenizer: Any) -> Any:
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=self.d_model,
            intermediate_size=self.d_mlp,
            num_hidden_layers=self.n_layers,
            num_attention_heads=self.n_heads,
            num_key_value_heads=self.n_heads,
            max_position_embeddings=64,
            tie_word_embeddings=False,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and bookkeeping of a pretraining run."""

    lr: float = 2e-3
    """Peak learning rate."""
    warmup: float = 0.05
    """Fraction of the steps spent warming up linearly."""
    min_lr_ratio: float = 0.1
    """The cosine decays to ``min_lr_ratio * lr``."""
    weight_decay: float = 0.1
    batch_size: int = 64
    grad_clip: float = 1.0
    seed: int = 0
    """Seeds the initialisation (the corpus order has its own seed in ``CorpusConfig``)."""
    eval_every: int = 100
    """Evaluate every this many steps (and at the end); 0: only at the end."""
    checkpoint_every: int = 200
    """With ``out_dir``: checkpoint every this many steps (0: never)."""
