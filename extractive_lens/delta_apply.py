"""Applying a delta without doubling the memory of the weights it touches.

``Originals``: where ``WeightDelta.apply`` keeps the original values for its bit-exact restore, in
the parameter's own dtype: beside it, in host memory, or in a temporary file.

``hooked``: theta + delta without touching (or copying) the linear weights: forward hooks add
``Delta W u``.

``WeightDelta.applied`` writes theta' into the weights and must keep the originals for a bit-exact
restore: for a delta on every block linear weight that is a second copy of most of the model. For
passes that only *read* theta' (the scores' second pass), ``hooked`` instead adds, at the output of
every linear layer the delta touches, ``u @ Delta W^T`` (``nn.Linear``) or ``u @ Delta W``
(GPT-2's ``Conv1D``, which stores ``(in, out)``), plus ``Delta b`` for biases. The weights are never
written, so nothing needs saving or restoring; memory holds the delta, which exists anyway.
Parameters that are not a linear layer's weight or bias (norm scales, embeddings) are applied in
place with ``applied`` (saved copies of those only).

The result equals ``applied`` up to floating-point rounding: ``W u + Delta W u`` instead of
``(W + Delta W) u``, computed in fp32 (float64 for float64 models) and cast to the layer's
output dtype.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from transformer_lens.model_bridge import TransformerBridge

_WRAPPER = "._original_component"


def owners(model: TransformerBridge) -> dict[str, tuple[nn.Module, str]]:
    """Parameter name (as in ``named_parameters``) -> (the module holding it, its attribute)."""
    out = {}
    for raw, _ in model.original_model.named_parameters():
        path, _, leaf = raw.rpartition(".")
        module = model.original_model.get_submodule(path) if path else model.original_model
        out[raw.replace(_WRAPPER, "")] = (module, leaf)
    return out


def _is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _add_delta(
    module: nn.Module,
    inputs: tuple,
    output: Tensor,
    *,
    weight: Tensor | None,
    bias: Tensor | None,
    conv: bool,
) -> Tensor:
    wide = torch.promote_types(output.dtype, torch.float32)  # float64 models stay float64
    x = inputs[0].to(wide)
    extra = 0.0
    if weight is not None:
        extra = x @ weight if conv else F.linear(x, weight)
    if bias is not None:
        extra = extra + bias
    return (output.to(wide) + extra).to(output.dtype)


@contextlib.contextmanager
def hooked(
    model: TransformerBridge, delta: Mapping[str, Tensor], scale: float = 1.0
) -> Iterator[TransformerBridge]:
    """The model computing theta + ``scale`` * delta while inside (see the module doc)."""
    from extractive_lens.delta import WeightDelta

    where = owners(model)
    per_module: dict[nn.Module, dict[str, Tensor]] = {}
    rest: dict[str, Tensor] = {}
    for name, d in delta.items():
        module, leaf = where[name]
        linear = isinstance(module, nn.Linear) or _is_conv1d(module)
        if linear and leaf in ("weight", "bias"):
            param = getattr(module, leaf)
            wide = torch.promote_types(param.dtype, torch.float32)
            t = d.to(device=param.device, dtype=wide)
            per_module.setdefault(module, {})[leaf] = t if scale == 1.0 else scale * t
        else:
            rest[name] = d
    handles = []
    try:
        for module, parts in per_module.items():
            hook = functools.partial(
                _add_delta,
                weight=parts.get("weight"),
                bias=parts.get("bias"),
                conv=_is_conv1d(module),
            )
            handles.append(module.register_forward_hook(hook))
        others = WeightDelta(rest, dtype=next(iter(rest.values())).dtype) if rest else None
        with others.applied(model, scale) if others else contextlib.nullcontext():
            yield model
    finally:
        for handle in handles:
            handle.remove()


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
