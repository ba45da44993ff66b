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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from extractive_lens.data import Example, first_token_ids
from extractive_lens.metrics import encode, ranks_from_logits
from extractive_lens.worlds.curricula import CorpusConfig, build_corpus
from extractive_lens.worlds.generator import FACT_ONLY, KNOWN, Fact, World, WorldConfig, make_world
from extractive_lens.worlds.tokenizer import build_tokenizer


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


def eval_sets(world: World) -> dict[str, tuple[list[Example], tuple[str, ...]]]:
    """What pretraining tracks: name -> (examples, options), all on pretraining entities.

    ``known_facts`` (known people -> city, among all cities), ``known_impl`` (known people ->
    language, trained), ``latent_impl`` (fact-only people -> language: never trained, a latent
    two-hop), ``mayor_impl`` (known cities' landmark -> mayor, trained) and ``background``
    (city -> language).
    """
    cities = tuple(c.name for c in world.cities)

    def person_rows(relation: str, group: str) -> list[Example]:
        out = []
        for p in world.people_in(group):
            c = world.city(p.city)
            out.append(Fact(relation, p.name, c.name if relation == "lives_in" else c.language))
        return [f.render() for f in out]

    return {
        "known_facts": (person_rows("lives_in", KNOWN), cities),
        "known_impl": (person_rows("speaks", KNOWN), world.languages),
        "latent_impl": (person_rows("speaks", FACT_ONLY), world.languages),
        "mayor_impl": (
            [Fact("landmark_mayor", c.landmark, c.mayor).render() for c in world.cities_in(KNOWN)],
            world.mayors,
        ),
        "background": (
            [Fact("city_language", c.name, c.language).render() for c in world.cities],
            world.languages,
        ),
    }


def hf_mean_ranks(
    hf: Any, tokenizer: Any, sets: dict[str, tuple[Sequence[Example], Sequence[str]]]
) -> dict[str, float]:
    """Mean rank of each eval set on a plain HF model (same encoding as ``metrics.mean_rank``)."""
    out = {}
    with torch.no_grad():
        for name, (examples, options) in sets.items():
            batch = encode(tokenizer, list(examples), with_answers=False)
            logits = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            last = logits[torch.arange(len(examples)), batch.last_prompt]
            option_ids = torch.tensor(first_token_ids(tokenizer, options))
            scores = last[:, option_ids]
            index = {o: i for i, o in enumerate(options)}
            answers = torch.tensor([index[e.answer] for e in examples])
            out[name] = ranks_from_logits(scores, answers).float().mean().item()
    return out


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


def run_key(world: World, corpus: CorpusConfig, model: ModelConfig, train: TrainConfig) -> str:
    """A short hash of everything that determines the trained weights."""
    blob = json.dumps(
        [world.config.to_dict(), corpus.to_dict(), asdict(model), asdict(train)], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


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
    from transformers import LlamaForCausalLM

    from extractive_lens.models import load_model

    start = time.perf_counter()
    world = world if isinstance(world, World) else make_world(world)
    ccfg, mcfg, tcfg = (
        corpus_config or CorpusConfig(),
        model_config or ModelConfig(),
        train_config or TrainConfig(),
    )
    key = run_key(world, ccfg, mcfg, tcfg)
    tokenizer = build_tokenizer(world)
    corpus = build_corpus(world, ccfg)
    ids = tokenizer(corpus.texts(), add_special_tokens=True)["input_ids"]
    batches = _batches(ids, tcfg.batch_size, tokenizer.pad_token_id)
    total = len(batches)
    sets = eval_sets(world)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tcfg.seed)
        hf = LlamaForCausalLM(mcfg.hf_config(tokenizer))
    hf.config._name_or_path = f"world-{key}"
    decay = [p for n, p in hf.named_parameters() if p.ndim == 2 and "embed" not in n]
    no_decay = [p for n, p in hf.named_parameters() if not (p.ndim == 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": tcfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=tcfg.lr,
        betas=(0.9, 0.98),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(tcfg, total))
    history: list[dict[str, float]] = []
    step, tokens = 0, 0
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "key": key,
            "world": world.config.to_dict(),
            "corpus": ccfg.to_dict(),
            "model": asdict(mcfg),
            "train": asdict(tcfg),
            "steps": total,
        }
        if (out / "run.json").exists():
            old = json.loads((out / "run.json").read_text())
            if old.get("key") != key:
                raise FileExistsError(
                    f"{out} holds a run with another configuration ({old.get('key')})"
                )
        else:
            (out / "run.json").write_text(json.dumps(meta, indent=1))
        step, tokens, history = _load_checkpoint(out / "checkpoint", hf, optimizer, scheduler)

    n_params = sum(p.numel() for p in hf.parameters())
    hf.train()
    running, count = 0.0, 0
    bar = tqdm(total=total, initial=step, desc=f"pretrain {ccfg.curriculum}", disable=not progress)
    while step < total and (max_steps is None or step < max_steps):
        input_ids, mask, labels = batches[step]
        loss = hf(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"pretrain: loss {loss.item()} at step {step}; lower the lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), tcfg.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        tokens += int(mask.sum())
        running, count = running + loss.item(), count + 1
        bar.update(1)
        last = step in (total, max_steps)
        if last or (tcfg.eval_every and step % tcfg.eval_every == 0):
            hf.eval()
            row = {
                "step": step,
                "tokens": tokens,
                "loss": running / max(count, 1),
                "lr": scheduler.get_last_lr()[0],
                **hf_mean_ranks(hf, tokenizer, sets),
            }
            hf.train()
            history.append(row)
            running, count = 0.0, 0
            bar.set_postfix({k: round(v, 2) for k, v in row.items() if k not in ("step", "tokens")})
        if (
            out is not None
            and tcfg.checkpoint_every
            and (step % tcfg.checkpoint_every == 0 or last)
        ):
            _save_checkpoint(out / "checkpoint", hf, optimizer, scheduler, step, tokens, history)
    bar.close()
    hf.eval()
    model = load_model(hf_model=hf, tokenizer=tokenizer)
    if out is not None and step == total:
        from extractive_lens.models import save_model

        save_model(model, out / "model", overwrite=True)
        (out / "history.json").write_text(json.dumps(history, indent=1))
    return PretrainResult(
        model=model,
        world=world,
        corpus_config=ccfg,
        model_config=mcfg,
        train_config=tcfg,
        history=history,
        seconds=time.perf_counter() - start,
        n_params=n_params,
    )


def _save_checkpoint(directory: Path, hf, optimizer, scheduler, step, tokens, history) -> None:
    from safetensors.torch import save_file

    tmp = directory.with_name(directory.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state = {k: v.detach().contiguous().clone() for k, v in hf.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        tmp / "optimizer.pt",
    )
    (tmp / "state.json").write_text(
        json.dumps({"step": step, "tokens": tokens, "history": history})
    )
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old.exists():
        shutil.rmtree(old)


def _load_checkpoint(directory: Path, hf, optimizer, scheduler) -> tuple[int, int, list]:
    if not (directory / "state.json").exists():
        return 0, 0, []
    from safetensors.torch import load_file

    hf.load_state_dict(load_file(str(directory / "model.safetensors")))
    opt = torch.load(directory / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    state = json.loads((directory / "state.json").read_text())
    return int(state["step"]), int(state["tokens"]), list(state["history"])


@contextlib.contextmanager
def threads(n: int | None):
    """Temporarily limit torch's intra-op threads (``None``: leave as is)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------- default world model


@dataclass(frozen=True)
class WorldModelSpec:
    """Everything that determines a named world model's weights."""

    world: WorldConfig = WorldConfig()
    corpus: CorpusConfig = CorpusConfig(repeats=150)
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()


WORLD_MODELS: dict[str, WorldModelSpec] = {"world-default": WorldModelSpec()}
"""Named world models for :func:`load_world_model`."""


def world_model_dir(name: str = "world-default") -> Path:
    """Where :func:`load_world_model` caches ``name``: ``cache_dir()/worlds/<name>-<hash>``."""
    from extractive_lens.models import cache_dir

    spec = _spec(name)
    key = run_key(make_world(spec.world), spec.corpus, spec.model, spec.train)
    return cache_dir() / "worlds" / f"{name}-{key}"


def _spec(name: str) -> WorldModelSpec:
    if name not in WORLD_MODELS:
        raise ValueError(f"unknown world model {name!r}; known: {sorted(WORLD_MODELS)}")
    return WORLD_MODELS[name]


def build_world_model(
    name: str = "world-default", *, progress: bool = True, n_threads: int | None = None
) -> Path:
    """Pretrain the named world model into the cache (resuming a partial run) and return its dir.

    About 1-3 minutes on one CPU thread for ``world-default``. Same name, same weights (on the
    same machine and thread count): the spec fixes every seed.
    """
    spec = _spec(name)
    directory = world_model_dir(name)
    if (directory / "model" / "model.safetensors").exists():
        return directory
    with threads(n_threads):
        pretrain(
            spec.world, spec.corpus, spec.model, spec.train, out_dir=directory, progress=progress
        )
    return directory


def load_world_model(
    name: str = "world-default",
    *,
    build: bool = True,
    progress: bool = True,
    device: Any = None,
    dtype: Any = None,
) -> Any:
    """A named world model as a ``TransformerBridge`` (``load_model("world-default")``).

    The weights are not shipped: the first call pretrains them from the spec's seeds (1-3 minutes
    on a CPU; ``python -m extractive_lens.worlds build-default`` does the same ahead of time) and
    caches them under ``cache_dir()/worlds``. With ``build=False`` a missing model is an error that
    names that command. The world itself is :func:`world_of` ``(name)``. ``device`` and ``dtype``
    are passed to ``load_model``.
    """
    from extractive_lens.models import ModelLoadError, load_model

    directory = world_model_dir(name)
    if not (directory / "model" / "model.safetensors").exists():
        if not build:
            raise ModelLoadError(
                f"world model {name!r} is not built yet ({directory}). Build it (1-3 min on a "
                f"CPU) with: python -m extractive_lens.worlds build-default --name {name}"
            )
        print(f"extractive_lens: pretraining world model {name!r} (1-3 min, cached in {directory})")
        build_world_model(name, progress=progress)
    model = load_model(directory / "model", device=device, dtype=dtype)
    model.cfg.model_name = name
    return model


def world_of(name: str = "world-default") -> World:
    """The world a named world model was pretrained on."""
    return make_world(_spec(name).world)
