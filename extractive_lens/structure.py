"""One description of a model's structure, read off the TransformerLens bridge at load time.

Every ``TransformerBridge`` adapter exposes the same component tree per block: ``ln1`` / ``ln2``
(pre-norms), ``ln1_post`` / ``ln2_post`` (post-norms), ``attn.q/k/v/o`` (plus ``q_norm`` /
``k_norm``) and ``mlp.gate/in/out``, each wrapping the module the forward really runs. This module
walks that tree and matches each wrapped module's parameters to their ``named_parameters`` names
*by identity*, so nothing here knows a Hugging Face parameter name. Components, the three scores,
``WeightDelta.restrict``, finetuning's default trainable set and the graph's reachability all read
the resulting :class:`ModelStructure`.

>>> from extractive_lens import tiny_model
>>> from extractive_lens.structure import model_structure
>>> s = model_structure(tiny_model("gpt2", n_layers=2))
>>> [m.role for m in s.maps[0]]
['q', 'k', 'v', 'o', 'norm', 'up', 'down']
>>> s.maps[0][3].transposed  # GPT-2's output projection is a Conv1D, stored [in, out]
True

Ownership (docs/method.md §2): a head owns its output rows of W_Q (and W_K, W_V under multi-head
attention) and its input columns of W_O; a K/V head (grouped- or multi-query attention) owns its
rows of W_K and W_V; an MLP owns W_gate, W_in, W_out, their biases, its pre-norm ``ln2`` and its
post-norm ``ln2_post``. Everything shared by all heads of a layer (``ln1``, ``ln1_post``, the output
bias, ``q_norm`` / ``k_norm``) and everything outside the blocks is *unowned* and reported in
coverage. Constants (Gemma's embedding scale, logit soft-capping, Granite's multipliers) are not
parameters and need no owner.

Fused weights. The bridge splits fused QKV (and Phi-3's gate/up) into per-map modules. Where the
split weights are *views* of the fused one (GPT-2 ``c_attn``, Phi-3 ``qkv_proj``),
``named_parameters`` keeps the views and drops the parent. Where they are *copies* (GPT-NeoX
``query_key_value``), the forward reads the copies only; the fused tensor is listed in
:attr:`ModelStructure.inert` (never trained, never owned) and ``save_model`` writes the copies
back into it.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "LinearMap",
    "ModelStructure",
    "ParamSlice",
    "UnsupportedModelError",
    "check_supported",
    "model_structure",
]

import torch
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens._bridge_checks import (
    Names,
    UnsupportedModelError,
    fused_rows,
    inert,
    pre_norms,
    refusal,
    transposed,
)

Owner = Literal["heads", "kv_heads", "mlp"]
Split = Literal["out", "in", "none", "diag"]


@dataclass(frozen=True)
class LinearMap:
    """One linear map ``u -> W u (+ b)`` inside a component, as the bridge runs it.

    Attributes:
        role: ``q``, ``k``, ``v``, ``o``, ``gate``, ``up``, ``down`` or ``norm`` / ``post_norm``.
        weight: the weight's ``named_parameters`` name.
        bias: the bias's name when the component owns one, else None.
        transposed: True when stored ``[in, out]`` (GPT-2's Conv1D), False for ``nn.Linear``.
        u_hook: hook holding the map's input u (for norms: the normalised input).
        d_hook: hook whose gradient is the loss gradient at the map's output.
        split: how heads share the map: by output rows (``out``: q/k/v), by input columns
            (``in``: o), not at all (``none``: MLP weights) or elementwise (``diag``: norms).
        owner: which score tensor its terms land in.
        n_split: the number of heads the map is split into (1 for ``none`` / ``diag``).
    """

    role: str
    weight: str
    bias: str | None
    transposed: bool
    u_hook: str
    d_hook: str
    split: Split
    owner: Owner
    n_split: int = 1


@dataclass(frozen=True)
class ParamSlice:
    """A contiguous slice of one parameter tensor along one dimension.

    Attributes:
        param: the parameter's name (as in ``named_parameters(model)``).
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


@dataclass(frozen=True)
class ModelStructure:
    """Shapes, per-layer linear maps, ownership and hooks of a bridged model.

    Attributes:
        arch: the Hugging Face architecture name.
        n_layers, n_heads, n_kv_heads, d_head, d_model: shapes (``n_kv_heads < n_heads``:
            grouped-query attention; ``n_kv_heads == 1``: multi-query attention).
        maps: per layer, the linear maps in forward order (informative scores sum over them).
        parallel: attention and MLP read the same residual (GPT-J, Phi, GPT-NeoX, ...).
        head_inputs / mlp_inputs: per layer, the hooks holding what the heads / the MLP read
            (the downstream substitution points: after any norm the component does not own,
            before any it owns).
        param_layer: parameter name -> block index, for every parameter inside a block.
        trainable: the default finetuning set: the weights of every block linear map.
        norms: per layer, norm name in the bridge (``ln1`` ...) -> its parameter names.
        inert: parameters the forward never reads (the fused parents of copied splits).
        fused_rows: inert fused parameter -> ((split parameter, its rows in the fused one), ...),
            so that ``save_model`` can write the trained copies back.
    """

    arch: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    maps: tuple[tuple[LinearMap, ...], ...]
    parallel: bool
    head_inputs: tuple[tuple[str, ...], ...]
    mlp_inputs: tuple[tuple[str, ...], ...]
    param_layer: dict[str, int] = field(repr=False)
    trainable: tuple[str, ...] = field(repr=False)
    norms: tuple[dict[str, tuple[str, ...]], ...] = field(repr=False)
    inert: tuple[str, ...] = ()
    fused_rows: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = field(default_factory=dict)

    @property
    def gqa(self) -> bool:
        """K/V heads are shared by groups of query heads (grouped- or multi-query attention)."""
        return self.n_kv_heads != self.n_heads

    @property
    def group_size(self) -> int:
        """Query heads per K/V head."""
        return self.n_heads // self.n_kv_heads

    def owned(self, layer: int, kind: str, head: int | None) -> list[ParamSlice]:
        """The slices component (layer, kind, head) owns; ``kind`` as in ``Component``."""
        out: list[ParamSlice] = []
        for m in self.maps[layer]:
            if kind == "mlp":
                if m.owner == "mlp":
                    out += [ParamSlice(n) for n in (m.weight, m.bias) if n is not None]
                continue
            mine = (m.owner == "kv_heads") == (kind == "kv_head") and m.owner != "mlp"
            if not mine or head is None:
                continue
            size = self.d_head
            if m.split == "out":
                dim = 1 if m.transposed else 0
                out.append(ParamSlice(m.weight, dim, head * size, (head + 1) * size))
                if m.bias is not None:
                    out.append(ParamSlice(m.bias, 0, head * size, (head + 1) * size))
            elif m.split == "in":
                dim = 0 if m.transposed else 1
                out.append(ParamSlice(m.weight, dim, head * size, (head + 1) * size))
        return out

    def layer_of(self, name: str) -> int | None:
        """The block index of a parameter, or None outside the blocks."""
        return self.param_layer.get(name)


# --------------------------------------------------------------------------- building

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_structure(model: TransformerBridge) -> ModelStructure:
    """The structure of ``model`` (computed once per model object, then cached)."""
    try:
        return _CACHE[model]
    except (KeyError, TypeError):
        pass
    structure = _build(model)
    with contextlib.suppress(TypeError):  # not weak-referenceable (a test double): no cache
        _CACHE[model] = structure
    return structure


def check_supported(model: TransformerBridge) -> None:
    """Raise ``UnsupportedModelError`` unless the scores are defined for this model."""
    model_structure(model)


def _build(model: TransformerBridge) -> ModelStructure:
    why = refusal(model)
    if why is not None:
        raise why
    cfg = model.cfg
    n_heads = int(cfg.n_heads)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
    names = Names(model)
    hooks = set(model.hook_dict)
    maps, heads_in, mlp_in, norms, layer_of = [], [], [], [], {}
    feeds = pre_norms(model)
    for i, block in enumerate(model.blocks):
        hook = _Hooks(f"blocks.{i}", hooks)
        pre = feeds[i]
        layer_maps, layer_norms = _block_maps(block, names, hook, n_heads, n_kv, pre["ln2"])
        maps.append(layer_maps)
        norms.append(layer_norms)
        heads_in.append(_inputs(block, hook, "ln1", ("q", "k", "v"), pre["ln1"]))
        mlp_in.append(_inputs(block, hook, "ln2", ("gate", "in"), pre["ln2"]))
        for p in block.parameters():
            if id(p) in names.by_id:
                layer_of[names.by_id[id(p)]] = i
    inert_names = tuple(n for block in model.blocks for n in inert(block, names))
    fused = {k: v for block in model.blocks for k, v in fused_rows(block, names).items()}
    linear = {m.weight for ms in maps for m in ms if m.split != "diag"}
    trainable = tuple(n for n in names.params if n in linear)
    return ModelStructure(
        arch=str(cfg.architecture),
        n_layers=len(model.blocks),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        d_head=int(cfg.d_head),
        d_model=int(cfg.d_model),
        maps=tuple(maps),
        parallel=bool(getattr(cfg, "parallel_attn_mlp", False)),
        head_inputs=tuple(heads_in),
        mlp_inputs=tuple(mlp_in),
        param_layer=layer_of,
        trainable=trainable,
        norms=tuple(norms),
        inert=inert_names,
        fused_rows=fused,
    )


class _Hooks:
    """Hook names inside one block, checked against the bridge's hook points."""

    def __init__(self, prefix: str, known: set[str]) -> None:
        self.prefix, self.known = prefix, known

    def __call__(self, path: str, hook: str) -> str:
        name = f"{self.prefix}.{path}.{hook}"
        if name not in self.known:
            raise UnsupportedModelError(f"the bridge has no hook point {name}")
        return name


def _inputs(
    block: torch.nn.Module, hook: _Hooks, norm: str, roles: tuple[str, ...], pre: bool
) -> tuple[str, ...]:
    """What a component reads: its pre-norm's input when it owns that norm (``ln2``: the MLP),
    the norm's output when it does not (``ln1``: shared by the heads), else its maps' inputs."""
    if pre:
        return (hook(norm, "hook_in" if norm == "ln2" else "hook_out"),)
    part = "attn" if norm == "ln1" else "mlp"
    owner = getattr(block, part)
    return tuple(hook(f"{part}.{r}", "hook_in") for r in roles if hasattr(owner, r))


def _block_maps(
    block: torch.nn.Module, names: Names, hook: _Hooks, n_heads: int, n_kv: int, pre_ln2: bool
) -> tuple[tuple[LinearMap, ...], dict[str, tuple[str, ...]]]:
    """A block's linear maps in forward order, and its norms' parameter names."""
    gqa = n_kv != n_heads

    def linear(part, role, bridge_role, split, owner, n_split, own_bias=True) -> LinearMap:  # noqa: ANN001
        comp = getattr(getattr(block, part), bridge_role)
        path = f"{part}.{bridge_role}"
        return LinearMap(
            role=role,
            weight=names.of(comp, "weight"),
            bias=names.of(comp, "bias") if own_bias else None,
            transposed=transposed(comp.original_component),
            u_hook=hook(path, "hook_in"),
            d_hook=hook(path, "hook_out"),
            split=split,
            owner=owner,
            n_split=n_split,
        )

    def norm(name: str, role: str) -> list[LinearMap]:
        ln = getattr(block, name, None)
        w = names.of(ln, "weight") if ln is not None else None
        if w is None:  # absent, or non-parametric (OLMo's LayerNorm)
            return []
        return [
            LinearMap(
                role,
                w,
                names.of(ln, "bias"),
                False,
                hook(name, "hook_normalized"),
                hook(name, "hook_out"),
                "diag",
                "mlp",
            )
        ]

    mlp = block.mlp
    kv_owner: Owner = "kv_heads" if gqa else "heads"
    maps = [
        linear("attn", "q", "q", "out", "heads", n_heads),
        linear("attn", "k", "k", "out", kv_owner, n_kv),
        linear("attn", "v", "v", "out", kv_owner, n_kv),
        linear("attn", "o", "o", "in", "heads", n_heads, own_bias=False),
        *(norm("ln2", "norm") if pre_ln2 else []),
        *([linear("mlp", "gate", "gate", "none", "mlp", 1)] if hasattr(mlp, "gate") else []),
        linear("mlp", "up", "in", "none", "mlp", 1),
        linear("mlp", "down", "out", "none", "mlp", 1),
        *norm("ln2_post", "post_norm"),
    ]
    return tuple(maps), _norm_params(block, names)


def _norm_params(block: torch.nn.Module, names: Names) -> dict[str, tuple[str, ...]]:
    """The parameter names of a block's norms (weight, bias where they exist)."""
    norms = {}
    for name, part in (
        ("ln1", block),
        ("ln1_post", block),
        ("ln2", block),
        ("ln2_post", block),
        ("q_norm", block.attn),
        ("k_norm", block.attn),
    ):
        comp = getattr(part, name, None)
        found = tuple(n for n in (names.of(comp, "weight"), names.of(comp, "bias")) if n)
        if found:
            norms[name] = found
    return norms
