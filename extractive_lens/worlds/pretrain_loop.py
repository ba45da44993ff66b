"""The pretraining loop: a fresh Llama-style model trained on a world's corpus, in order.

:func:`pretrain` is documented in :mod:`extractive_lens.worlds.pretrain`, which re-exports it.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from extractive_lens.worlds.checkpoints import (
    claim_run_dir,
    load_checkpoint,
    run_key,
    save_checkpoint,
)
from extractive_lens.worlds.curricula import CorpusConfig, build_corpus
from extractive_lens.worlds.entities import WorldConfig
from extractive_lens.worlds.generator import make_world
from extractive_lens.worlds.pretrain_config import ModelConfig, TrainConfig
from extractive_lens.worlds.pretrain_eval import eval_sets, hf_mean_ranks
from extractive_lens.worlds.tokenizer import build_tokenizer
from extractive_lens.worlds.world import World


@dataclass
class PretrainResult:
    """A pretrained world model and how it got there."""

    model: Any
    """The ``TransformerBridge``."""
    world: World
    corpus_config: CorpusConfig
    model_config: ModelConfig
    train_config: TrainConfig
    history: list[dict[str, float]] = field(repr=False)
    """One row per evaluation: ``step``, ``tokens``, ``loss`` (mean training loss since the last
    row), ``lr`` and the mean rank of every :func:`eval_sets` split."""
    seconds: float = 0.0
    """Wall time of this call (a resumed run counts only the resumed part)."""
    n_params: int = 0

    def final(self) -> dict[str, float]:
        return dict(self.history[-1]) if self.history else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "world": self.world.config.to_dict(),
            "corpus": self.corpus_config.to_dict(),
            "model": asdict(self.model_config),
            "train": asdict(self.train_config),
            "n_params": self.n_params,
            "history": self.history,
            "seconds": self.seconds,
        }


def _schedule(cfg: TrainConfig, total: int):
    warm = max(1, round(cfg.warmup * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _batches(ids: list[list[int]], batch_size: int, pad: int) -> list[tuple[torch.Tensor, ...]]:
    out = []
    for i in range(0, len(ids), batch_size):
        rows = ids[i : i + batch_size]
        width = max(map(len, rows))
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, row in enumerate(rows):
            input_ids[j, : len(row)] = torch.tensor(row)
            mask[j, : len(row)] = 1
        labels = input_ids.masked_fill(mask == 0, -100)
        out.append((input_ids, mask, labels))
    return out


@dataclass
class _RunState:
    """Where a run stands: optimizer steps taken, tokens seen, evaluation rows so far."""

    step: int = 0
    tokens: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def pretrain(
    world: World | WorldConfig | None = None,
    corpus_config: CorpusConfig | None = None,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    max_steps: int | None = None,
) -> PretrainResult:
    """Pretrain a fresh model on ``world``'s corpus and return it wrapped as a bridge.

    Args:
        world: a :class:`World` or the :class:`WorldConfig` to draw one from (default: seed 0).
        corpus_config, model_config, train_config: defaults if ``None``.
        out_dir: where checkpoints, the final model and ``run.json`` go; an unfinished run there
            with the same configuration is resumed, a different configuration is an error.
        progress: show a tqdm bar.
        max_steps: stop after this many steps (the schedule is still that of the full run; for
            tests and interrupted-run checks).
    """
    from extractive_lens.models import load_model

    start = time.perf_counter()
    world = world if isinstance(world, World) else make_world(world)
    ccfg, mcfg, tcfg = (
        corpus_config or CorpusConfig(),
        model_config or ModelConfig(),
        train_config or TrainConfig(),
    )
    tokenizer = build_tokenizer(world)
    batches = _corpus_batches(world, ccfg, tokenizer, tcfg.batch_size)
    hf = _fresh_model(mcfg, tokenizer, tcfg.seed, run_key(world, ccfg, mcfg, tcfg))
    optimizer = _optimizer(hf, tcfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(tcfg, len(batches)))
    run = _RunState()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        claim_run_dir(out, world, ccfg, mcfg, tcfg, len(batches))
        run = _RunState(*load_checkpoint(out / "checkpoint", hf, optimizer, scheduler))
    n_params = sum(p.numel() for p in hf.parameters())
    loop = _TrainingLoop(hf, tokenizer, optimizer, scheduler, tcfg, eval_sets(world))
    checkpoint = None if out is None else out / "checkpoint"
    loop.run(batches, run, max_steps, checkpoint, f"pretrain {ccfg.curriculum}", progress)
    hf.eval()
    model = load_model(hf_model=hf, tokenizer=tokenizer)
    if out is not None and run.step == len(batches):
        _save_final(model, out, run.history)
    return PretrainResult(
        model=model,
        world=world,
        corpus_config=ccfg,
        model_config=mcfg,
        train_config=tcfg,
        history=run.history,
        seconds=time.perf_counter() - start,
        n_params=n_params,
    )


def _corpus_batches(
    world: World, ccfg: CorpusConfig, tokenizer: Any, batch_size: int
) -> list[tuple[torch.Tensor, ...]]:
    """The world's corpus, tokenised, in consecutive batches (in the curriculum's order)."""
    ids = tokenizer(build_corpus(world, ccfg).texts(), add_special_tokens=True)["input_ids"]
    return _batches(ids, batch_size, tokenizer.pad_token_id)


def _fresh_model(mcfg: ModelConfig, tokenizer: Any, seed: int, key: str) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` (the global torch RNG is left untouched)."""
    from transformers import LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        hf = LlamaForCausalLM(mcfg.hf_config(tokenizer))
    hf.config._name_or_path = f"world-{key}"
    return hf


def _optimizer(hf: Any, tcfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not on embeddings and norms)."""
    decay = [p for n, p in hf.named_parameters() if p.ndim == 2 and "embed" not in n]
    no_decay = [p for n, p in hf.named_parameters() if not (p.ndim == 2 and "embed" not in n)]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": tcfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=tcfg.lr,
        betas=(0.9, 0.98),
    )


class _TrainingLoop:
    """Steps through the batches in order; evaluates every ``eval_every`` steps and at the end,
    checkpoints every ``checkpoint_every`` steps and at the end."""

    def __init__(self, hf, tokenizer, optimizer, scheduler, tcfg: TrainConfig, sets) -> None:
        self.hf, self.tokenizer, self.sets = hf, tokenizer, sets
        self.optimizer, self.scheduler, self.tcfg = optimizer, scheduler, tcfg

    def run(
        self,
        batches: list[tuple[torch.Tensor, ...]],
        run: _RunState,
        max_steps: int | None,
        checkpoint: Path | None,
        desc: str,
        progress: bool,
    ) -> None:
        """Train from ``run.step`` to the end (or ``max_steps``), updating ``run`` in place."""
        tcfg, total = self.tcfg, len(batches)
        self.bar = tqdm(total=total, initial=run.step, desc=desc, disable=not progress)
        self.hf.train()
        running, count = 0.0, 0
        while run.step < total and (max_steps is None or run.step < max_steps):
            input_ids, mask, labels = batches[run.step]
            loss = self.step(input_ids, mask, labels, run.step)
            run.step += 1
            run.tokens += int(mask.sum())
            running, count = running + loss, count + 1
            self.bar.update(1)
            last = run.step in (total, max_steps)
            if last or (tcfg.eval_every and run.step % tcfg.eval_every == 0):
                self.evaluate(run, running / max(count, 1))
                running, count = 0.0, 0
            every = tcfg.checkpoint_every
            if checkpoint is not None and every and (run.step % every == 0 or last):
                state = (run.step, run.tokens, run.history)
                save_checkpoint(checkpoint, self.hf, self.optimizer, self.scheduler, *state)
        self.bar.close()

    def step(self, input_ids, mask, labels, step: int) -> float:
        """One optimizer step on the next-token loss of one batch; returns the loss."""
        loss = self.hf(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"pretrain: loss {loss.item()} at step {step}; lower the lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.hf.parameters(), self.tcfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()

    def evaluate(self, run: _RunState, loss: float) -> None:
        """Append a history row: step, tokens, mean loss since the last row, lr, eval ranks."""
        self.hf.eval()
        row = {
            "step": run.step,
            "tokens": run.tokens,
            "loss": loss,
            "lr": self.scheduler.get_last_lr()[0],
            **hf_mean_ranks(self.hf, self.tokenizer, self.sets),
        }
        self.hf.train()
        run.history.append(row)
        self.bar.set_postfix(
            {k: round(v, 2) for k, v in row.items() if k not in ("step", "tokens")}
        )


def _save_final(model: Any, out: Path, history: list[dict[str, float]]) -> None:
    """The finished model (``out/model``, loadable with ``load_model``) and its history."""
    from extractive_lens.models import save_model

    save_model(model, out / "model", overwrite=True)
    (out / "history.json").write_text(json.dumps(history, indent=1))
