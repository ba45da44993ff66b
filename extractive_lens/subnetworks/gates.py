"""Hard-concrete (L0) gates over attention heads and MLPs, learned as in the heuristic core.

Bhaskar, Friedman, Chen (ACL 2024; code princeton-nlp/Heuristic-Core, ``src/pruning``): one gate
per query head and per MLP. A gate z in [0, 1] is a stretched, clamped concrete variable

    s = sigmoid((log u - log(1 - u) + log_alpha) / T),  u ~ U(0, 1)
    z = hardtanh(s * (r - l) + l, 0, 1),                 l = -0.1, r = 1.1, T = 2/3

so it is exactly 0 or exactly 1 with positive probability (the closed forms are :func:`prob_zero`
and :func:`prob_one`). A pruned unit is *mean-ablated*: its output x becomes ``(x - mu) * z + mu``
with mu its mean output over the training prompts (all non-padding positions).

Training (:func:`learn_mask`) minimises the KL divergence between the full and the masked model's
next-token distributions at the last prompt position plus the Lagrangian sparsity penalty
``lambda_1 (t - s) + lambda_2 (t - s)^2``, where s is the fraction of sampled gates that are 0 and
the target t is ramped linearly from 0; log_alpha descends (AdamW, lr 0.1) while the lambdas
*ascend* (AdamW with ``maximize``, lr 1). The KL is KL(full || masked), as the authors' code
computes it (``kl_div(log p_masked, log p_full, log_target=True)``). At evaluation the gates are
deterministic (:func:`deterministic_gates`).

Heads are gated on their outputs before W_O (``blocks.L.attn.hook_z``, one slot per *query* head),
so grouped-query attention needs nothing special; MLPs on ``blocks.L.hook_mlp_out``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.components import Component, components
from extractive_lens.hooking import hooked_run
from extractive_lens.metrics import ExampleLike, as_examples, batches, encode, model_device

LIMIT_LEFT, LIMIT_RIGHT = -0.1, 1.1
TEMPERATURE = 2 / 3
FACTOR = 0.8
"""The deterministic mask's soft values are sigmoid(log_alpha / T * FACTOR) (authors' code)."""
EPS = 1e-6


# --------------------------------------------------------------------------- the distribution


def _logit(x: float) -> float:
    return math.log(x) - math.log(1 - x)


def sample_gates(
    log_alpha: Float[Tensor, " unit"], u: Float[Tensor, "*sample unit"]
) -> Float[Tensor, "*sample unit"]:
    """Gates z from uniform noise ``u`` (differentiable in ``log_alpha``)."""
    u = u.clamp(EPS, 1 - EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / TEMPERATURE)
    return torch.nn.functional.hardtanh(s * (LIMIT_RIGHT - LIMIT_LEFT) + LIMIT_LEFT, 0.0, 1.0)


def prob_zero(log_alpha: Tensor) -> Tensor:
    """P(z = 0) = P(stretched s <= 0) = sigmoid(T logit(-l / (r - l)) - log_alpha)."""
    x0 = -LIMIT_LEFT / (LIMIT_RIGHT - LIMIT_LEFT)
    return torch.sigmoid(TEMPERATURE * _logit(x0) - log_alpha)


def prob_one(log_alpha: Tensor) -> Tensor:
    """P(z = 1) = P(stretched s >= 1) = 1 - sigmoid(T logit((1 - l) / (r - l)) - log_alpha)."""
    x1 = (1 - LIMIT_LEFT) / (LIMIT_RIGHT - LIMIT_LEFT)
    return 1 - torch.sigmoid(TEMPERATURE * _logit(x1) - log_alpha)


def deterministic_gates(
    log_alpha: Float[Tensor, " unit"], groups: Sequence[Sequence[int]]
) -> Float[Tensor, " unit"]:
    """The evaluation mask: per group, zero the round(E[#zeros]) units of smallest soft value.

    As in the authors' code, each group is one layer's heads or one MLP (their gates live in one
    tensor per module), E[#zeros] = sum of P(z = 0), and kept units take the soft value
    sigmoid(log_alpha / T * 0.8) (about 1 once log_alpha is large).
    """
    log_alpha = log_alpha.detach()
    out = torch.sigmoid(log_alpha / TEMPERATURE * FACTOR)
    for group in groups:
        index = torch.tensor(list(group), dtype=torch.long)
        n_zeros = int(torch.round(prob_zero(log_alpha[index]).sum()).item())
        if n_zeros:
            smallest = torch.topk(out[index], k=n_zeros, largest=False).indices
            out[index[smallest]] = 0.0
    return out


# --------------------------------------------------------------------------- the units


@dataclass(frozen=True)
class MaskUnits:
    """The gated units of a model: per layer its query heads, then its MLP (forward order)."""

    units: tuple[Component, ...]
    n_layers: int
    n_heads: int

    @classmethod
    def of(cls, model: TransformerBridge, *, heads: bool = True, mlps: bool = True) -> MaskUnits:
        kinds = [k for k, on in (("head", heads), ("mlp", mlps)) if on]
        if not kinds:
            raise ValueError("nothing to mask: enable heads, MLPs or both")
        units = tuple(components(model, kinds=kinds))
        return cls(units, int(model.cfg.n_layers), int(model.cfg.n_heads))

    def __len__(self) -> int:
        return len(self.units)

    def names(self) -> list[str]:
        return [str(u) for u in self.units]

    def index(self) -> dict[Component, int]:
        return {u: i for i, u in enumerate(self.units)}

    def groups(self) -> list[list[int]]:
        """One group per layer's heads and one per MLP (the deterministic mask's rounding unit)."""
        out: dict[tuple[int, str], list[int]] = {}
        for i, u in enumerate(self.units):
            out.setdefault((u.layer, u.kind), []).append(i)
        return list(out.values())

    def hooks(self) -> dict[str, list[tuple[int, int | None]]]:
        """hook name -> [(unit index, head or None)] for the units that hook gates."""
        out: dict[str, list[tuple[int, int | None]]] = {}
        for i, u in enumerate(self.units):
            name = _hook_name(u)
            out.setdefault(name, []).append((i, u.head))
        return out


def _hook_name(u: Component) -> str:
    return f"blocks.{u.layer}.hook_mlp_out" if u.kind == "mlp" else f"blocks.{u.layer}.attn.hook_z"


@dataclass(frozen=True)
class UnitMeans:
    """Mean output of every gated unit over the training prompts' non-padding positions.

    Attributes:
        values: hook name -> ``[head, d_head]`` (``hook_z``) or ``[d_model]`` (``hook_mlp_out``).
        n_tokens: how many positions were averaged.
    """

    values: dict[str, Tensor]
    n_tokens: int


def unit_means(
    model: TransformerBridge,
    units: MaskUnits,
    examples: Sequence[ExampleLike],
    *,
    batch_size: int = 32,
) -> UnitMeans:
    """Each unit's mean output over every real (non-padding) prompt position of ``examples``."""
    sums: dict[str, Tensor] = {}
    count = 0
    names = list(units.hooks())
    for chunk in batches(as_examples(examples), batch_size):
        batch = encode(model.tokenizer, chunk, with_answers=False).to(model_device(model))
        with torch.no_grad(), hooked_run(model, keep=names) as capture:
            model(batch.input_ids, attention_mask=batch.attention_mask)
        keep = batch.attention_mask.bool()
        for name in names:
            sums[name] = sums.get(name, 0) + capture.values[name][keep].double().sum(0)
        count += int(keep.sum())
    return UnitMeans({n: (s / count).float() for n, s in sums.items()}, count)


@contextlib.contextmanager
def gated(
    model: TransformerBridge, units: MaskUnits, z: Float[Tensor, " unit"], means: UnitMeans | None
) -> Iterator[TransformerBridge]:
    """Context: the model with every unit's output replaced by ``(x - mu) * z + mu``.

    ``means=None`` zero-ablates (mu = 0). ``z`` may carry gradients (mask training).
    """
    edits = {}
    for name, slots in units.hooks().items():
        index = torch.tensor([i for i, _ in slots])
        is_heads = slots[0][1] is not None
        heads = torch.tensor([h for _, h in slots]) if is_heads else None
        mu = None if means is None else means.values[name]

        def fn(x: Tensor, index=index, heads=heads, mu=mu) -> Tensor:  # noqa: ANN001
            gate = z[index].to(device=x.device, dtype=x.dtype)
            base = torch.zeros_like(x) if mu is None else mu.to(x.device, x.dtype).expand_as(x)
            if heads is None:  # one MLP: a scalar gate
                return (x - base) * gate[0] + base
            scale = torch.ones(x.shape[-2], device=x.device, dtype=x.dtype)
            scale = scale.index_put((heads.to(x.device),), gate)
            return (x - base) * scale[:, None] + base

        edits[name] = fn
    with hooked_run(model, edit=edits):
        yield model


@dataclass(frozen=True)
class GateStats:
    """Bookkeeping of one mask-training step (recorded every ``log_every`` steps)."""

    step: int
    target: float
    sparsity: float
    kl: float
    lambdas: tuple[float, float]


@dataclass(frozen=True)
class LearnedMask:
    """A learned subnetwork.

    Attributes:
        units: unit names in forward order.
        log_alpha: the learned gate parameters.
        gates: the deterministic evaluation mask (0 = pruned).
        target: the target sparsity t.
        seed: the mask-training seed.
        history: training curve.
    """

    units: tuple[str, ...]
    log_alpha: Float[Tensor, " unit"]
    gates: Float[Tensor, " unit"]
    target: float
    seed: int
    history: tuple[GateStats, ...] = field(repr=False, default=())

    @property
    def kept(self) -> list[str]:
        return [u for u, g in zip(self.units, self.gates.tolist(), strict=True) if g > 0]

    @property
    def sparsity(self) -> float:
        """The achieved fraction of pruned units under the deterministic mask."""
        return float((self.gates == 0).float().mean())
