"""Pretrain a small Llama-style model from scratch on a world's corpus (CPU-sized).

>>> from extractive_lens.worlds import make_world, pretrain, CorpusConfig, ModelConfig, TrainConfig
>>> result = pretrain(make_world(), CorpusConfig(repeats=1), ModelConfig(n_layers=1, d_model=32),
...                   TrainConfig(eval_every=0), progress=False)  # doctest: +SKIP
>>> result.model.cfg.n_layers  # doctest: +SKIP
1

The model is a ``LlamaForCausalLM`` built from a ``LlamaConfig`` (untied embeddings) and trained as
a plain Hugging Face model, then wrapped by :func:`extractive_lens.models.load_model` in a
``TransformerBridge`` like every other model. Training reads the corpus once, in its curriculum
order, in consecutive batches of one-sentence documents (``<bos>`` + sentence, right-padded), with
the next-token loss on every real token. AdamW (no weight decay on embeddings and norms), linear
warmup then cosine decay to ``min_lr_ratio * lr``, gradient clipping. Same world, corpus config,
model config and train config give the same weights (on the same machine and thread count).

With ``out_dir`` the run writes a checkpoint every ``checkpoint_every`` steps
(``checkpoint/``: weights, optimizer and scheduler state, step, history) and resumes from it when
called again with the same configuration; the final model goes to ``out_dir/model`` (loadable with
``load_model(out_dir / "model")``), the configuration to ``out_dir/run.json``.

The pieces, all importable from here: :mod:`.pretrain_config` (model and train configs),
:mod:`.pretrain_eval` (what the history tracks), :mod:`.checkpoints` (the run directory and its
checkpoint), :mod:`.pretrain_loop` (:func:`pretrain`) and :mod:`.world_models` (named, cached world
models).
"""

from extractive_lens.worlds.checkpoints import run_key
from extractive_lens.worlds.pretrain_config import ModelConfig, TrainConfig
from extractive_lens.worlds.pretrain_eval import eval_sets, hf_mean_ranks
from extractive_lens.worlds.pretrain_loop import PretrainResult, pretrain
from extractive_lens.worlds.world_models import (
    WORLD_MODELS,
    WorldModelSpec,
    build_world_model,
    load_world_model,
    threads,
    world_model_dir,
    world_of,
)

__all__ = [
    "WORLD_MODELS",
    "ModelConfig",
    "PretrainResult",
    "TrainConfig",
    "WorldModelSpec",
    "build_world_model",
    "eval_sets",
    "hf_mean_ranks",
    "load_world_model",
    "pretrain",
    "run_key",
    "threads",
    "world_model_dir",
    "world_of",
]
