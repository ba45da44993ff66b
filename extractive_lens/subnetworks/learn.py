"""Learning one subnetwork: hard-concrete gates against KL to the full model (see :mod:`.gates`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.metrics import (
    Batch,
    ExampleLike,
    as_examples,
    encode,
    last_prompt_forward,
)
from extractive_lens.models import named_parameters
from extractive_lens.subnetworks.gates import (
    GateStats,
    LearnedMask,
    MaskUnits,
    UnitMeans,
    deterministic_gates,
    gated,
    sample_gates,
)


@dataclass(frozen=True)
class MaskConfig:
    """How masks are learned. Defaults: the authors' recipe, steps and init scaled to small data.

    The authors (MNLI, BERT-base) train about 9,000 steps at batch 128 with the target ramped over
    all but the last ~300; our datasets hold tens of prompts, so a few hundred steps suffice.
    """

    steps: int = 400
    """Optimizer steps."""
    ramp: float = 0.75
    """Fraction of the steps over which the target sparsity rises linearly from 0 to its value."""
    lr: float = 0.1
    """AdamW learning rate of log_alpha (authors: 0.1)."""
    reg_lr: float = 1.0
    """AdamW learning rate of the Lagrange multipliers, which are maximised (authors: 1)."""
    warmup: float = 0.05
    """Fraction of steps of linear learning-rate warmup; the rate then decays linearly to 0
    (``get_linear_schedule_with_warmup`` in the authors' code)."""
    init_log_alpha: float = 3.0
    """Initial log_alpha (normal, std 0.01). The authors start at 10 and train ~9,000 steps; at
    10 a gate sits in hardtanh's clamped region (P(z = 1) > 0.999), where its gradient is 0, and
    only AdamW's weight decay moves it over thousands of steps. At 3 every gate still starts
    mostly open (P(z = 1) = 0.80) but learns within our few hundred steps."""
    batch_size: int = 32
    heads: bool = True
    mlps: bool = True
    mean_ablate: bool = True
    """Pruned units take their mean output (authors); False: zero ablation."""
    log_every: int = 25

    def __post_init__(self) -> None:
        if self.steps < 1 or not 0 < self.ramp <= 1 or not 0 <= self.warmup < 1:
            raise ValueError("need steps >= 1, 0 < ramp <= 1 and 0 <= warmup < 1")
        if self.batch_size < 1 or self.lr <= 0 or self.reg_lr <= 0:
            raise ValueError("batch_size, lr and reg_lr must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


def target_at(step: int, sparsity: float, config: MaskConfig) -> float:
    """The target sparsity at ``step``: a linear ramp from 0 over ``ramp * steps``, then flat."""
    ramp_steps = max(1, round(config.ramp * config.steps))
    return sparsity * min(1.0, step / ramp_steps)


@contextlib.contextmanager
def frozen(model: TransformerBridge) -> Iterator[None]:
    """No parameter gradients while masks train (restores each ``requires_grad`` on exit)."""
    params = named_parameters(model)
    before = {n: p.requires_grad for n, p in params.items()}
    try:
        for p in params.values():
            p.requires_grad_(False)
        yield
    finally:
        for n, p in params.items():
            p.requires_grad_(before[n])


def _lr_factor(config: MaskConfig):  # noqa: ANN202
    warm = round(config.warmup * config.steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (config.steps - step) / max(1, config.steps - warm))

    return factor


def learn_mask(
    model: TransformerBridge,
    examples: Sequence[ExampleLike],
    sparsity: float,
    *,
    units: MaskUnits,
    means: UnitMeans | None,
    config: MaskConfig | None = None,
    seed: int = 0,
    progress: bool = False,
) -> LearnedMask:
    """Learn gates that keep the model's next-token distribution on ``examples`` at ``sparsity``.

    Args:
        model: the model whose behaviour the subnetwork must keep (weights unchanged).
        examples: the in-domain prompts (answers are ignored: the target is the full model).
        sparsity: the final target fraction of pruned units, in [0, 1).
        units: the gated units (:meth:`MaskUnits.of`).
        means: mean outputs for mean ablation (None: zero ablation).
        seed: seeds the gate initialisation, the noise and the batch order.
    """
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    config = config or MaskConfig()
    from tqdm.auto import tqdm

    examples = as_examples(examples)
    gen = torch.Generator().manual_seed(seed)
    batch = encode(model.tokenizer, examples, with_answers=False)  # small in-domain sets: one
    with torch.no_grad():
        full = torch.log_softmax(last_prompt_forward(model, batch).float(), -1)
    n = len(units)
    log_alpha = torch.nn.Parameter(config.init_log_alpha + 0.01 * torch.randn(n, generator=gen))
    lambdas = torch.nn.Parameter(torch.zeros(2))
    optimizer, scheduler = _optimizer(log_alpha, lambdas, config)
    history: list[GateStats] = []
    bar = tqdm(range(config.steps), desc=f"mask s={sparsity} seed={seed}", disable=not progress)
    with frozen(model):
        for step in bar:
            rows = _draw_rows(len(examples), config.batch_size, gen)
            z = sample_gates(log_alpha, torch.rand(n, generator=gen))
            sub = _take(batch, rows)
            with gated(model, units, z, means):
                logits = last_prompt_forward(model, sub)
            kl = _kl(full[rows], logits)
            gap = target_at(step, sparsity, config) - (1 - z.mean())
            loss = kl + lambdas[0] * gap + lambdas[1] * gap**2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step % config.log_every == 0 or step == config.steps - 1:
                history.append(_stats(step, sparsity, config, z, kl, lambdas))
    gates = deterministic_gates(log_alpha.detach(), units.groups())
    return LearnedMask(
        tuple(units.names()), log_alpha.detach().clone(), gates, sparsity, seed, tuple(history)
    )


def _optimizer(log_alpha: Tensor, lambdas: Tensor, config: MaskConfig):  # noqa: ANN202
    """AdamW descending on the gates and ascending on the Lagrange multipliers, with the
    recipe's warm-up schedule."""
    optimizer = torch.optim.AdamW(
        [{"params": [log_alpha]}, {"params": [lambdas], "lr": config.reg_lr, "maximize": True}],
        lr=config.lr,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config))


def _kl(full_log_probs: Tensor, logits: Tensor) -> Tensor:
    """KL(full model || gated model) of the next-token distributions, mean over the batch."""
    return torch.nn.functional.kl_div(
        torch.log_softmax(logits.float(), -1),
        full_log_probs,
        reduction="batchmean",
        log_target=True,
    )


def _stats(step: int, sparsity: float, config: MaskConfig, z, kl, lambdas) -> GateStats:  # noqa: ANN001
    return GateStats(
        step,
        target_at(step, sparsity, config),
        float(1 - z.detach().mean()),
        float(kl.detach()),
        (float(lambdas[0].detach()), float(lambdas[1].detach())),
    )


def _draw_rows(n: int, batch_size: int, gen: torch.Generator) -> Tensor:
    """A random batch of row indices (the whole set, shuffled, when it fits in one batch)."""
    return torch.randperm(n, generator=gen)[: min(n, batch_size)]


def _take(batch: Batch, rows: Tensor) -> Batch:
    return Batch(
        batch.input_ids[rows],
        batch.attention_mask[rows],
        batch.last_prompt[rows],
        batch.labels[rows],
    )
