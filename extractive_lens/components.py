"""Components: the addressable parts of a model (MLPs and attention heads) and the weights they own.

>>> from extractive_lens import tiny_model, components, Component
>>> model = tiny_model("llama", n_layers=2, n_heads=4, n_kv_heads=2)
>>> [str(c) for c in components(model)][:3]
['L0.H0', 'L0.H1', 'L0.H2']
>>> Component(0, "mlp").owned(model)[0].param
'model.layers.0.post_attention_layernorm.weight'

Ownership (method §2) is read from the bridge by :mod:`extractive_lens.structure`: a head owns
its output rows of W_Q, W_K, W_V (and their biases) and its input columns of W_O; an MLP owns
W_in (and W_gate), W_out, their biases and its own norms (pre ``ln2``, post ``ln2_post``). Under
grouped- or multi-query attention a K/V head is shared by a group of query heads, so it is its own
component, ``Component(layer, "kv_head", g)``, and query heads own only their W_Q rows and W_O
columns: nothing is counted twice. Parameters no component owns (embeddings, the attention norms,
``q_norm``/``k_norm``, the attention output bias, the final norm, inert fused copies) are listed by
``unowned_parameters``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.models import named_parameters
from extractive_lens.structure import (
    ParamSlice,
    UnsupportedModelError,
    check_supported,
    model_structure,
)

Kind = Literal["mlp", "head", "kv_head"]


@dataclass(frozen=True, order=True)
class Component:
    """One addressable part of the model.

    Attributes:
        layer: the block index, 0-based.
        kind: ``"mlp"``, ``"head"`` (a query head; under MHA also its K/V) or ``"kv_head"``
            (a K/V head shared by a group of query heads; only under grouped-query attention).
        head: the head index within the layer (query head, or K/V group); None for MLPs.
    """

    layer: int
    kind: Kind
    head: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("mlp", "head", "kv_head"):
            raise ValueError(
                f"Component kind must be 'mlp', 'head' or 'kv_head', not {self.kind!r}"
            )
        if (self.kind == "mlp") != (self.head is None):
            raise ValueError(
                f"{self.kind} components {'take no' if self.kind == 'mlp' else 'need a'} head index"
            )

    def __str__(self) -> str:
        if self.kind == "mlp":
            return f"L{self.layer}.MLP"
        return f"L{self.layer}.{'KV' if self.kind == 'kv_head' else 'H'}{self.head}"

    @property
    def output_hook(self) -> str:
        """The hook holding this component's output y (method §3): hook_mlp_out or hook_z."""
        if self.kind == "mlp":
            return f"blocks.{self.layer}.hook_mlp_out"
        if self.kind == "kv_head":
            return f"blocks.{self.layer}.attn.hook_v"
        return f"blocks.{self.layer}.attn.hook_z"

    def input_hooks(self, model: TransformerBridge) -> tuple[str, ...]:
        """The hooks holding what this component reads (its downstream substitution points)."""
        s = model_structure(model)
        return s.mlp_inputs[self.layer] if self.kind == "mlp" else s.head_inputs[self.layer]

    def owned(self, model: TransformerBridge) -> list[ParamSlice]:
        """The exact parameter slices this component owns in ``model``."""
        s = model_structure(model)
        n = {"mlp": 1, "head": s.n_heads, "kv_head": s.n_kv_heads}[self.kind]
        if not 0 <= self.layer < s.n_layers or not 0 <= (self.head or 0) < n:
            raise ValueError(f"{self} does not exist in this model")
        if self.kind == "kv_head" and not s.gqa:
            raise ValueError(
                f"{self} does not exist: without grouped-query attention heads own K/V"
            )
        return s.owned(self.layer, self.kind, self.head)


def components(
    model: TransformerBridge,
    *,
    layers: Iterable[int] | None = None,
    kinds: Iterable[Kind] | None = None,
) -> list[Component]:
    """All components in forward order: per layer the heads, the K/V heads, then the MLP."""
    s = model_structure(model)
    wanted = set(kinds) if kinds is not None else {"mlp", "head", "kv_head"}
    chosen = range(s.n_layers) if layers is None else sorted(set(layers))
    out: list[Component] = []
    for layer in chosen:
        if not 0 <= layer < s.n_layers:
            raise ValueError(f"layer {layer} out of range: the model has {s.n_layers} layers")
        if "head" in wanted:
            out += [Component(layer, "head", h) for h in range(s.n_heads)]
        if "kv_head" in wanted and s.gqa:
            out += [Component(layer, "kv_head", g) for g in range(s.n_kv_heads)]
        if "mlp" in wanted:
            out.append(Component(layer, "mlp"))
    return out


def owned_masks(
    components: Iterable[Component], model: TransformerBridge, tensors: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Per parameter among ``tensors``' names, a boolean mask (of its shape) of the elements the
    given components own; parameters none of them owns are absent."""
    masks: dict[str, Tensor] = {}
    for component in components:
        for s in component.owned(model):
            if s.param in tensors:
                if s.param not in masks:
                    masks[s.param] = torch.zeros_like(tensors[s.param], dtype=torch.bool)
                masks[s.param][s.index(masks[s.param].ndim)] = True
    return masks


def unowned_parameters(model: TransformerBridge) -> list[str]:
    """Parameters no component owns: embeddings, attention norms, output biases, final norm..."""
    owned = {sl.param for c in components(model) for sl in c.owned(model)}
    return [n for n in named_parameters(model) if n not in owned]


def kv_group(model: TransformerBridge, head: int) -> int:
    """The K/V head that query head ``head`` reads under grouped-query attention."""
    return head // model_structure(model).group_size


__all__ = [
    "Component",
    "Kind",
    "ParamSlice",
    "UnsupportedModelError",
    "check_supported",
    "components",
    "kv_group",
    "unowned_parameters",
]
