"""Applying a delta without doubling the memory of the weights it touches.

``Originals``: where ``WeightDelta.apply`` keeps the original values for its bit-exact restore, in
the parameter's own dtype: beside it, in host memory, or in a temporary file.

``hooked``: theta + delta for passes that only *read* theta' (the scores' second pass), without
writing or keeping a copy of any linear weight. ``WeightDelta.applied`` writes theta' into the
weights and must keep the originals for a bit-exact restore: for a delta on every block linear
weight that is a second copy of most of the model. ``hooked`` instead runs each linear layer the
delta touches (``nn.Linear``, GPT-2's ``Conv1D``) with its weight and bias replaced, for that call
only, by ``W' = W + Delta W`` formed exactly as ``apply`` forms it; autograd would keep every
``W'`` alive until the backward pass (a linear layer saves its weight to back-propagate to its
input), so a saved-tensor hook stores a recipe instead and the backward pass forms ``W'`` again.
Memory then holds one layer's ``W'`` at a time; the cost is one elementwise sum per layer and
pass, against a matrix product over every token. Parameters that are not a linear layer's weight
or bias (norm scales, embeddings, which may be tied to the unembedding) are applied in place with
``applied`` (saved copies of those only).

The weights and the kernels are those of ``applied``, so the logits and gradients are the same
bit for bit.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor, nn
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.models import named_parameters
from extractive_lens.models.parameters import _WRAPPER


def owners(model: TransformerBridge) -> dict[str, tuple[nn.Module, str]]:
    """Parameter name (as in ``named_parameters``) -> (the module holding it, its attribute)."""
    out, seen = {}, set()
    for path, module in model.original_model.named_modules():
        for leaf, p in module.named_parameters(recurse=False):
            if id(p) not in seen:  # a tied weight keeps its first name, as named_parameters does
                seen.add(id(p))
                raw = f"{path}.{leaf}" if path else leaf
                out[raw.replace(_WRAPPER, "")] = (module, leaf)
    return out


def _is_linear(module: nn.Module) -> bool:
    conv1d = type(module).__name__ == "Conv1D" and hasattr(module, "nf")
    return isinstance(module, nn.Linear) or conv1d


def shifted(p: Tensor, d: Tensor, scale: float) -> Tensor:
    """``p + scale * d`` summed in fp32 (or wider) and cast to ``p``'s dtype: theta' for one
    parameter, the same for ``apply`` and ``hooked``."""
    wide = torch.promote_types(p.dtype, torch.float32)
    return torch.add(p.to(wide), d.to(p.device, wide), alpha=scale).to(p.dtype)


class _ShiftedCall:
    """A linear module's forward with ``leaf -> W + scale * Delta W``, recomputed in backward."""

    def __init__(self, module: nn.Module, parts: dict[str, Tensor], scale: float) -> None:
        self.module, self.parts, self.scale = module, parts, scale
        self.forward = module.forward  # the class's forward, bound

    def weight(self, leaf: str) -> Tensor:
        """``W + scale * Delta W`` for one of the module's parameters (``"weight"``, ``"bias"``)."""
        with torch.no_grad():
            return shifted(getattr(self.module, leaf), self.parts[leaf], self.scale)

    def __call__(self, *args, **kwargs):
        made = {leaf: self.weight(leaf) for leaf in self.parts}
        # pointers, not the tensors: autograd keeps the hooks, which must not keep W' alive
        storage = {w.untyped_storage().data_ptr(): (leaf, w.dtype) for leaf, w in made.items()}

        def pack(t: Tensor):
            key = storage.get(t.untyped_storage().data_ptr()) if t.device.type != "meta" else None
            if key is None or t.dtype != key[1]:
                return t
            return key[0], t.size(), t.stride(), t.storage_offset()  # a view of W': its recipe

        def unpack(saved):
            if isinstance(saved, Tensor):
                return saved
            leaf, size, stride, offset = saved
            return self.weight(leaf).as_strided(size, stride, offset)

        params = self.module._parameters
        originals = {leaf: params[leaf] for leaf in made}
        try:
            # nn.Module only accepts Parameters through setattr; the dict takes the plain tensor
            params.update(made)
            with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
                return self.forward(*args, **kwargs)
        finally:
            params.update(originals)


@contextlib.contextmanager
def hooked(
    model: TransformerBridge, delta: Mapping[str, Tensor], scale: float = 1.0
) -> Iterator[TransformerBridge]:
    """The model computing theta + ``scale`` * delta while inside (see the module doc)."""
    where = owners(model)
    per_module: dict[nn.Module, dict[str, Tensor]] = {}
    rest: dict[str, Tensor] = {}
    for name, d in delta.items():
        module, leaf = where[name]
        if _is_linear(module) and leaf in ("weight", "bias"):
            per_module.setdefault(module, {})[leaf] = d
        else:
            rest[name] = d
    patched: list[nn.Module] = []
    restore = None
    try:
        for module, parts in per_module.items():
            module.forward = _ShiftedCall(module, parts, scale)  # an instance attribute
            patched.append(module)
        if rest:
            restore = apply_in_place(named_parameters(model), rest, scale, "memory")
        yield model
    finally:
        if restore is not None:
            restore()
        for module in patched:
            del module.forward  # the class's forward again


def apply_in_place(
    params: Mapping[str, Tensor], delta: Mapping[str, Tensor], scale: float, keep: str
) -> Callable[[], None]:
    """``WeightDelta.apply``: write theta' into the parameters, keeping the originals (``keep``:
    where) for the returned bit-exact restore."""
    offloaded = [n for n in delta if params[n].is_meta]
    if offloaded:
        raise ValueError(
            f"cannot apply a delta to weights offloaded to disk by device_map ({offloaded[:3]}"
            f", {len(offloaded)} in all): give load_model more max_memory for the GPU/CPU"
        )
    saved = Originals(keep)
    for n in delta:
        saved.put(n, params[n])
    restore = functools.partial(saved.restore, params)
    try:
        with torch.no_grad():
            for n, d in delta.items():
                params[n].copy_(shifted(params[n], d, scale))
    except BaseException:
        restore()
        raise
    return restore


class Originals:
    """Original parameter values kept for a bit-exact restore, in their own dtype."""

    def __init__(self, keep: str) -> None:
        if keep not in ("memory", "cpu", "disk"):
            raise ValueError(f"keep must be 'memory', 'cpu' or 'disk', got {keep!r}")
        self.keep = keep
        self.copies: dict[str, Tensor] = {}
        # open until restore() (closed there); deleted by the OS when closed
        self.file = tempfile.TemporaryFile() if keep == "disk" else None  # noqa: SIM115
        self.spans: dict[str, tuple[int, int]] = {}

    def put(self, name: str, p: Tensor) -> None:
        if self.file is None:
            device = "cpu" if self.keep == "cpu" else p.device
            self.copies[name] = p.detach().to(device, copy=True)
            return
        data = p.detach().cpu().contiguous().view(torch.uint8).reshape(-1).numpy()
        start = self.file.tell()
        data.tofile(self.file)
        self.spans[name] = (start, data.nbytes)

    def restore(self, params: Mapping[str, Tensor]) -> None:
        with torch.no_grad():
            for n, original in self.copies.items():
                params[n].copy_(original)
            if self.file is None:
                return
            for n, (start, size) in self.spans.items():
                self.file.seek(start)
                raw = torch.frombuffer(bytearray(self.file.read(size)), dtype=torch.uint8)
                p = params[n]
                p.copy_(raw.view(p.dtype).reshape(p.shape))
            self.file.close()
            self.file = None
            self.spans = {}
