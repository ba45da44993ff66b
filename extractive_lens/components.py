"""Components: the addressable parts of a model (MLPs and attention heads) and the weights they own.

>>> from extractive_lens import tiny_model, components, Component
>>> model = tiny_model("llama", n_layers=2, n_heads=4, n_kv_heads=2)
>>> [str(c) for c in components(model)][:3]
['L0.H0', 'L0.H1', 'L0.H2']
>>> Component(0, "mlp").owned(model)[0].param
'model.layers.0.mlp.gate_proj.weight'

Ownership (METHOD.md §2): a head owns its output rows of W_Q, W_K, W_V (and their biases) and its
input columns of W_O; an MLP owns W_in (and W_gate), W_out, their biases and the norm that feeds it.
Under grouped-query attention a K/V head is shared by a group of query heads, so it is its own
component, ``Component(layer, "kv_head", g)``, and query heads own only their W_Q rows and W_O
columns: nothing is counted twice. Parameters no component owns (embeddings, the attention norm,
the attention output bias, the final norm) are listed by ``unowned_parameters``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.models import named_parameters

Kind = Literal["mlp", "head", "kv_head"]
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "GPT2LMHeadModel")


class UnsupportedModelError(ValueError):
    """The model's architecture has no component map (yet)."""


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
        """The hook holding this component's output y (METHOD.md §3): hook_mlp_out or hook_z."""
        if self.kind == "mlp":
            return f"blocks.{self.layer}.hook_mlp_out"
        if self.kind == "kv_head":
            return f"blocks.{self.layer}.attn.hook_v"
        return f"blocks.{self.layer}.attn.hook_z"

    @property
    def input_hook(self) -> str:
        """The hook holding the (normalised) residual this component reads."""
        return f"blocks.{self.layer}.{'ln2' if self.kind == 'mlp' else 'ln1'}.hook_out"

    def owned(self, model: TransformerBridge) -> list[ParamSlice]:
        """The exact parameter slices this component owns in ``model``."""
        return _layout(model).owned(self)


@dataclass(frozen=True)
class ParamSlice:
    """A contiguous slice of one parameter tensor along one dimension.

    Attributes:
        param: the parameter's Hugging Face name (as in ``named_parameters(model)``).
        dim: the sliced dimension.
        start: first index of the slice.
        stop: one past the last index; ``None`` with ``start == 0`` means the whole dimension.
    """

    param: str
    dim: int = 0
    start: int = 0
    stop: int | None = None

    def index(self, ndim: int) -> tuple[slice, ...]:
        """An index tuple selecting the slice in a tensor of ``ndim`` dimensions."""
        idx = [slice(None)] * ndim
        idx[self.dim] = slice(self.start, self.stop)
        return tuple(idx)

    def mask(self, tensor: torch.Tensor) -> torch.Tensor:
        """A boolean mask of ``tensor``'s shape, True inside the slice."""
        mask = torch.zeros(tensor.shape, dtype=torch.bool, device=tensor.device)
        mask[self.index(tensor.ndim)] = True
        return mask


def components(
    model: TransformerBridge,
    *,
    layers: Iterable[int] | None = None,
    kinds: Iterable[Kind] | None = None,
) -> list[Component]:
    """All components in forward order: per layer the heads, the K/V heads, then the MLP."""
    layout = _layout(model)
    wanted = set(kinds) if kinds is not None else {"mlp", "head", "kv_head"}
    chosen = range(layout.n_layers) if layers is None else sorted(set(layers))
    out: list[Component] = []
    for layer in chosen:
        if not 0 <= layer < layout.n_layers:
            raise ValueError(f"layer {layer} out of range: the model has {layout.n_layers} layers")
        if "head" in wanted:
            out += [Component(layer, "head", h) for h in range(layout.n_heads)]
        if "kv_head" in wanted and layout.gqa:
            out += [Component(layer, "kv_head", g) for g in range(layout.n_kv_heads)]
        if "mlp" in wanted:
            out.append(Component(layer, "mlp"))
    return out


def unowned_parameters(model: TransformerBridge) -> list[str]:
    """Parameters (or parts) no component owns: embeddings, attention norms, output biases..."""
    layout = _layout(model)
    owned = {s.param for c in components(model) for s in layout.owned(c)}
    shared = set(layout.shared_per_layer())
    return [n for n in named_parameters(model) if n not in owned or n in shared]


def check_supported(model: TransformerBridge) -> None:
    """Raise ``UnsupportedModelError`` unless the component map covers this architecture."""
    _layout(model)


def kv_group(model: TransformerBridge, head: int) -> int:
    """The K/V head that query head ``head`` reads under grouped-query attention."""
    layout = _layout(model)
    return head // (layout.n_heads // layout.n_kv_heads)


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class _Layout:
    """Where each architecture keeps its per-layer weights, and how heads slice them."""

    arch: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    params: frozenset[str]

    @property
    def gqa(self) -> bool:
        return self.n_kv_heads != self.n_heads

    def _have(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n in self.params]

    def owned(self, c: Component) -> list[ParamSlice]:
        if c.kind != "mlp":
            n = self.n_kv_heads if c.kind == "kv_head" else self.n_heads
            if c.head is None or not 0 <= c.head < n or c.layer >= self.n_layers:
                raise ValueError(f"{c} does not exist in this model")
        elif not 0 <= c.layer < self.n_layers:
            raise ValueError(f"{c} does not exist: the model has {self.n_layers} layers")
        if self.arch == "GPT2LMHeadModel":
            return self._gpt2(c)
        return self._llama(c)

    def _rows(
        self, names: Iterable[str], head: int, dim: int = 0, offset: int = 0
    ) -> list[ParamSlice]:
        start = offset + head * self.d_head
        return [ParamSlice(n, dim, start, start + self.d_head) for n in self._have(names)]

    def _llama(self, c: Component) -> list[ParamSlice]:
        p = f"model.layers.{c.layer}"
        if c.kind == "mlp":
            names = [
                f"{p}.mlp.{m}_proj.{w}" for m in ("gate", "up", "down") for w in ("weight", "bias")
            ]
            names.append(f"{p}.post_attention_layernorm.weight")
            return [ParamSlice(n) for n in self._have(names)]
        kv = [f"{p}.self_attn.{m}_proj.{w}" for m in ("k", "v") for w in ("weight", "bias")]
        if c.kind == "kv_head":
            return self._rows(kv, c.head)
        q = [f"{p}.self_attn.q_proj.{w}" for w in ("weight", "bias")]
        own = self._rows(q, c.head) + self._rows([f"{p}.self_attn.o_proj.weight"], c.head, dim=1)
        return own if self.gqa else own + self._rows(kv, c.head)

    def _gpt2(self, c: Component) -> list[ParamSlice]:
        p = f"transformer.h.{c.layer}"
        if c.kind == "mlp":
            names = [f"{p}.mlp.{m}.{w}" for m in ("c_fc", "c_proj") for w in ("weight", "bias")]
            names += [f"{p}.ln_2.weight", f"{p}.ln_2.bias"]
            return [ParamSlice(n) for n in self._have(names)]
        # The bridge splits GPT-2's fused c_attn into q/k/v Linears (out, in); the output
        # projection stays a Conv1D stored as (in, out), so a head owns its rows there too.
        qkv = [f"{p}.attn.{m}.{w}" for m in ("q", "k", "v") for w in ("weight", "bias")]
        return self._rows(qkv, c.head) + self._rows([f"{p}.attn.o.weight"], c.head)

    def shared_per_layer(self) -> list[str]:
        """Per-layer parameters that feed or follow all heads at once (owned by no component)."""
        if self.arch == "GPT2LMHeadModel":
            names = [
                f"transformer.h.{i}.{n}"
                for i in range(self.n_layers)
                for n in ("ln_1.weight", "ln_1.bias", "attn.o.bias")
            ]
        else:
            names = [
                f"model.layers.{i}.{n}"
                for i in range(self.n_layers)
                for n in ("input_layernorm.weight", "self_attn.o_proj.bias")
            ]
        return self._have(names)


def _layout(model: TransformerBridge) -> _Layout:
    arch = str(model.cfg.architecture)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"unsupported: {arch}. extractive_lens maps components for "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}; other architectures need a parameter layout "
            "in extractive_lens/components.py (and tests) before their scores can be trusted."
        )
    cfg = model.cfg
    return _Layout(
        arch=arch,
        n_layers=int(cfg.n_layers),
        n_heads=int(cfg.n_heads),
        n_kv_heads=int(getattr(cfg, "n_key_value_heads", None) or cfg.n_heads),
        d_head=int(cfg.d_head),
        params=frozenset(named_parameters(model)),
    )
