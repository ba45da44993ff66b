"""Finetuning on new facts, returning the weight change as a ``WeightDelta`` (docs/method.md §2).

>>> from extractive_lens.data import first_hop
>>> from extractive_lens.models import tiny_model
>>> from extractive_lens.training import finetune
>>> model, data = tiny_model(), first_hop()
>>> result = finetune(model, data.facts, lr=3e-3, epochs=2, progress=False,
...                   eval_sets={"facts": (data.facts, data.fact_options)})
>>> [row["epoch"] for row in result.history]
[0, 1, 2]
>>> with result.delta.applied(model):  # the finetuned model; restored exactly on exit
...     pass

The recipe is the paper's: Adam with a constant learning rate, cross-entropy on the answer tokens
only (``metrics.answer_loss``), fp32 master weights whatever the model's dtype (the optimizer steps
fp32 copies, which are cast into the model after every step), shuffling from a ``torch.Generator``
seeded by ``seed`` (no global RNG), and the model in eval mode (no dropout). Same inputs and seed
give a bit-identical delta on CPU (on GPU, as far as its kernels are deterministic).

**The model is left exactly as it was.** Training happens in place, then the delta (trained minus
original, in fp32) is taken and the original weights are copied back bit-exactly, also when training
fails. Use ``result.delta.applied(model)`` to get the finetuned model.

**What is trained** (``trainable``):

- ``None`` (default): the *block linear weights*, i.e. the weight of every linear map the bridge
  runs inside a block (attention Q/K/V/O and MLP gate/in/out; ``ModelStructure.trainable``). Not
  trained: embeddings, unembedding, norms, biases, and fused weights the forward never reads
  (GPT-NeoX's ``query_key_value``, whose split copies are what the bridge runs and trains).
- a list of layer indices: the block linear weights of those layers only.
- a list of ``Component``s: only the slices of the block linear weights that those components own
  (the gradient is masked outside them); ``components(model)`` as a whole equals the default set.
- a list of parameter names (as in ``named_parameters(model)``): those whole parameters, of any
  kind (this is how to train biases, norms or embeddings).

The kinds can be mixed in one list; the trained set is their union.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.components import Component
from extractive_lens.data import Example
from extractive_lens.delta import WeightDelta
from extractive_lens.metrics import (
    ExampleLike,
    answer_index,
    answer_loss,
    as_examples,
    batches,
    collapsed,
    encode,
    forward,
    model_device,
    option_logits,
    ranks_from_logits,
)
from extractive_lens.models import model_identity, named_parameters
from extractive_lens.structure import model_structure

Trainable = Sequence[int | Component | str] | None

#: A run counts as diverged once at least this share of the checked rows has collapsed logits.
COLLAPSED_SHARE = 0.5


class DivergedError(FloatingPointError):
    """Training diverged: the loss became NaN/inf, or the logits collapsed.

    Collapsed logits (``metrics.collapsed``: all options tied, or non-finite) are as much a sign
    of a destroyed model as a NaN loss, and more dangerous: with ties counted for the answer they
    would look like perfect ranks. A subclass of ``FloatingPointError``, so sweeps record it as a
    failed (diverged) run.
    """


EvalSets = Mapping[str, tuple[Sequence[ExampleLike], Sequence[str]]]


@dataclass(frozen=True)
class FinetuneResult:
    """The outcome of ``finetune``.

    Attributes:
        delta: trained minus original weights (fp32, CPU); its ``metadata`` holds the training
            configuration (lr, epochs, batch_size, seed, trainable, n_examples, ...).
        history: one row per epoch, starting with epoch 0 (before training): ``epoch``, ``loss``
            (epoch 0: mean answer loss of the initial weights; later: mean training loss over the
            epoch's steps, weighted by batch size) and ``rank/<name>`` for every eval set (mean rank
            after that epoch).
        seconds: wall time of the whole call.
    """

    delta: WeightDelta
    history: list[dict[str, float]] = field(repr=False)
    seconds: float

    def table(self) -> list[dict[str, float]]:
        """The history rows (copies), e.g. for ``pandas.DataFrame(result.table())``."""
        return [dict(row) for row in self.history]

    def final(self, name: str) -> float:
        """The mean rank of eval set ``name`` after the last epoch."""
        key = f"rank/{name}"
        if key not in self.history[-1]:
            names = [k[5:] for k in self.history[-1] if k.startswith("rank/")]
            raise KeyError(f"no eval set {name!r}; evaluated: {names}")
        return self.history[-1][key]


def trainable_masks(
    model: TransformerBridge, trainable: Trainable = None
) -> tuple[dict[str, Tensor | None], str]:
    """Resolve ``trainable`` (see the module doc) to name -> mask (None: the whole parameter).

    Returns the masks and a short description for the delta's metadata.
    """
    params = named_parameters(model)
    structure = model_structure(model)
    linear = list(structure.trainable)  # every block linear map's weight, read off the bridge
    if trainable is None:
        return dict.fromkeys(linear), "block linear weights"
    items = list(trainable)
    if not items:
        raise ValueError("trainable is empty: nothing would be trained")
    masks: dict[str, Tensor | None] = {}
    layers = sorted({i for i in items if isinstance(i, int) and not isinstance(i, bool)})
    comps = [c for c in items if isinstance(c, Component)]
    names = [n for n in items if isinstance(n, str)]
    other = [x for x in items if not isinstance(x, int | Component | str) or isinstance(x, bool)]
    if other:
        raise TypeError(f"trainable entries must be layer ints, Components or names: {other[:3]}")
    n_layers = int(model.cfg.n_layers)
    if any(not 0 <= layer < n_layers for layer in layers):
        raise ValueError(f"trainable layers {layers} out of range: the model has {n_layers}")
    for n in linear:
        if structure.layer_of(n) in layers:
            masks[n] = None
    for c in comps:
        for s in c.owned(model):
            if s.param in linear and s.param not in masks:
                masks[s.param] = s.mask(params[s.param])
            elif s.param in linear and masks[s.param] is not None:
                masks[s.param] = masks[s.param] | s.mask(params[s.param])
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(f"trainable: the model has no parameters named {unknown[:5]}")
    masks.update(dict.fromkeys(names))
    parts = [f"block linear weights of layers {layers}"] if layers else []
    parts += [f"components [{', '.join(map(str, comps))}]"] if comps else []
    parts += [f"parameters {names}"] if names else []
    return masks, "; ".join(parts)


def _check_recipe(lr: float, epochs: int, batch_size: int) -> None:
    """Refuse a recipe that cannot train, before any work."""
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _setup(
    model: TransformerBridge,
    masks: dict[str, Tensor | None],
    gradient_checkpointing: bool,
    base: WeightDelta | None,
) -> dict[str, Any]:
    """The rest of what a delta's metadata records about how it was trained."""
    return {
        "optimizer": "Adam, constant lr, fp32 master weights, loss on answer tokens",
        "model_dtype": str(named_parameters(model)[next(iter(masks))].dtype),
        "gradient_checkpointing": gradient_checkpointing,
        "base": None if base is None else {"norm": base.norm(), "metadata": base.metadata},
    }


def finetune(
    model: TransformerBridge,
    examples: Sequence[ExampleLike],
    *,
    lr: float,
    epochs: int,
    batch_size: int = 8,
    seed: int = 0,
    trainable: Trainable = None,
    eval_sets: EvalSets | None = None,
    eval_batch_size: int = 32,
    base: WeightDelta | None = None,
    progress: bool = True,
    gradient_checkpointing: bool = False,
) -> FinetuneResult:
    """Finetune on ``examples`` and return the weight delta; the model's weights are unchanged.

    Args:
        model: the model; its weights are restored bit-exactly afterwards (also on errors).
        examples: ``Example``s or ``(prompt, answer)`` pairs; the loss is on answer tokens only.
        lr: Adam's constant learning rate (the paper: 3e-6 on OLMo-7B).
        epochs: passes over the examples, each in a fresh seeded random order.
        batch_size: examples per optimizer step.
        seed: seeds the shuffling; the same seed gives a bit-identical delta.
        trainable: what to train (module doc); default the block linear weights.
        eval_sets: name -> (examples, options); the mean rank of each is recorded before training
            and after every epoch.
        base: start from theta + base (applied for the duration of the call); the returned delta
            is then relative to theta + base, so the final model is theta + base + delta.
        progress: show a tqdm bar over epochs.
        gradient_checkpointing: keep only each block's input during the forward pass and
            recompute the block in the backward pass (about one more forward per step; the
            activation memory of a step drops from all blocks' to one block's). Same delta.

    Raises:
        DivergedError: (a ``FloatingPointError``, weights still restored) the loss became NaN
            or infinite, or the logits collapsed (at least half the answer positions of a step,
            or of an eval set's items, all tied or non-finite; see ``metrics.collapsed``).
    """
    start = time.perf_counter()
    examples = as_examples(examples)
    _check_recipe(lr, epochs, batch_size)
    masks, described = trainable_masks(model, trainable)
    recipe = {"lr": lr, "epochs": epochs, "batch_size": batch_size, "seed": seed}
    config = {**recipe, "trainable": described, "n_examples": len(examples)}
    config.update(_setup(model, masks, gradient_checkpointing, base))
    with contextlib.ExitStack() as stack:
        if base is not None:
            stack.enter_context(base.applied(model))
        if gradient_checkpointing:
            stack.enter_context(activation_checkpointing(model))
        run = _Run(model, masks, lr, batch_size, eval_sets or {}, eval_batch_size)
        tensors, history = run.train(examples, epochs, seed, progress)
    delta = WeightDelta(
        tensors,
        identity=model_identity(model),
        metadata=config,
        layers=model_structure(model).param_layer,
    )
    return FinetuneResult(delta, history, time.perf_counter() - start)


@contextlib.contextmanager
def activation_checkpointing(model: TransformerBridge):
    """Run every transformer block under ``torch.utils.checkpoint`` (non-reentrant) while
    inside: its activations are recomputed in the backward pass instead of stored. Hooks inside
    a block fire again during the recomputation, so use it for training, not for caching."""
    from torch.utils.checkpoint import checkpoint

    blocks = list(model.blocks)
    for block in blocks:
        original = block.forward

        def wrapped(*args, _forward=original, **kwargs):
            if not torch.is_grad_enabled():
                return _forward(*args, **kwargs)
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        # An instance attribute, set past the bridge's attribute forwarding to the HF module:
        # nn.Module.__call__ finds it before the class's forward.
        object.__setattr__(block, "forward", wrapped)
    try:
        yield model
    finally:
        for block in blocks:
            object.__delattr__(block, "forward")


class _Run:
    """One run: the saved originals, the fp32 master weights, their masks and the optimizer."""

    def __init__(self, model, masks, lr, batch_size, eval_sets, eval_batch_size) -> None:
        self.model, self.lr, self.batch_size = model, lr, batch_size
        self.eval_sets, self.eval_batch_size = eval_sets, eval_batch_size
        self.params = named_parameters(model)
        device = model_device(model)
        self.originals = {n: self.params[n].detach().clone() for n in masks}
        self.masters = {
            n: o.float().clone().requires_grad_(True) for n, o in self.originals.items()
        }
        self.masks = {n: None if m is None else m.to(device) for n, m in masks.items()}
        self.optimizer = torch.optim.Adam(list(self.masters.values()), lr=lr)

    def evaluate(self, epoch: int) -> dict[str, float]:
        out = {}
        for name, (ex, options) in self.eval_sets.items():
            logits = option_logits(self.model, ex, options, batch_size=self.eval_batch_size)
            self.check_collapse(logits, epoch, f"the option logits of eval set {name!r}")
            ranks = ranks_from_logits(logits, answer_index(ex, options))
            out[f"rank/{name}"] = ranks.float().mean().item()
        return out

    def check_collapse(self, logits: Tensor, epoch: int, what: str) -> None:
        """Raise ``DivergedError`` when most rows of ``logits`` carry no preference."""
        share = collapsed(logits.detach().float()).float().mean().item()
        if share >= COLLAPSED_SHARE:
            raise DivergedError(
                f"finetune diverged at epoch {epoch} (0 = before training; lr={self.lr:g}): "
                f"{what} collapsed "
                f"({share:.0%} of rows tied or non-finite), so every rank would be meaningless. "
                "Lower the learning rate."
            )

    def loss(self, examples: list[Example]) -> float:
        """Mean answer loss over ``examples`` (weighted by batch size), without training."""
        total = 0.0
        with torch.no_grad():
            for chunk in batches(examples, self.batch_size):
                batch = encode(self.model.tokenizer, chunk)
                total += answer_loss(forward(self.model, batch), batch).item() * len(chunk)
        return total / len(examples)

    def train(self, examples: list[Example], epochs: int, seed: int, progress: bool):
        model, params = self.model, self.params
        everything = {id(p): p for p in [*model.parameters(), *params.values()]}
        flags = {k: p.requires_grad for k, p in everything.items()}
        was_training = model.training
        generator = torch.Generator().manual_seed(seed)
        try:
            model.eval()  # no dropout
            for p in everything.values():
                p.requires_grad_(False)
            for n in self.masters:
                params[n].requires_grad_(True)
            history = [{"epoch": 0, "loss": self.loss(examples), **self.evaluate(0)}]
            bar = tqdm(range(1, epochs + 1), desc="finetune", disable=not progress, leave=False)
            for epoch in bar:
                order = torch.randperm(len(examples), generator=generator).tolist()
                total = 0.0
                for step, chunk in enumerate(
                    batches([examples[i] for i in order], self.batch_size)
                ):
                    total += self.step(chunk, epoch, step) * len(chunk)
                history.append(
                    {"epoch": epoch, "loss": total / len(examples), **self.evaluate(epoch)}
                )
                bar.set_postfix({k.removeprefix("rank/"): v for k, v in history[-1].items()})
            if epochs and not self.eval_sets:  # the last step's weights are otherwise unchecked
                with torch.no_grad():
                    batch = encode(model.tokenizer, examples[: self.batch_size])
                    logits = forward(model, batch)[batch.loss_mask]
                self.check_collapse(logits, epochs, "the logits at the answer tokens")
            delta = {}
            for n, master in self.masters.items():
                diff = master.detach() - self.originals[n].float()
                mask = self.masks[n]
                delta[n] = (diff if mask is None else torch.where(mask, diff, 0.0)).cpu()
            return delta, history
        finally:
            with torch.no_grad():
                for n, original in self.originals.items():
                    params[n].copy_(original)
                    params[n].grad = None
            for k, p in everything.items():
                p.requires_grad_(flags[k])
            model.train(was_training)

    def step(self, chunk: list[Example], epoch: int, step: int) -> float:
        """One Adam step on the fp32 masters; the model then holds the masters cast to its dtype."""
        batch = encode(self.model.tokenizer, chunk)
        logits = forward(self.model, batch)
        loss = answer_loss(logits, batch)
        value = loss.item()
        if math.isfinite(value):  # a finite loss can still hide logits that tell nothing apart
            answer_logits = logits[batch.loss_mask.to(logits.device)]
            self.check_collapse(answer_logits, epoch, "the logits at the answer tokens")
        else:
            raise DivergedError(
                f"finetune: the loss is {value} at epoch {epoch}, step {step} (lr={self.lr:g}). "
                "Training diverged or the weights hold NaN/inf; lower the learning rate."
            )
        for n in self.masters:
            self.params[n].grad = None
        loss.backward()
        with torch.no_grad():
            for n, master in self.masters.items():
                grad = self.params[n].grad
                grad = torch.zeros_like(master) if grad is None else grad.float()
                mask = self.masks[n]
                master.grad = grad if mask is None else torch.where(mask, grad, 0.0)
            self.optimizer.step()
            for n, master in self.masters.items():
                self.params[n].copy_(master)
        return value
