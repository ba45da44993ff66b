"""Weight deltas theta' - theta as first-class objects (docs/method.md §2).

>>> from extractive_lens.components import Component
>>> from extractive_lens.delta import WeightDelta, snapshot
>>> from extractive_lens.models import tiny_model
>>> model = tiny_model("llama", n_layers=2)
>>> before = snapshot(model)
>>> # ... train the model in place, then: delta = WeightDelta.between(before, model)
>>> delta = WeightDelta.zeros_like(model)
>>> with delta.applied(model, scale=0.5):  # weights are restored bit-exactly on exit
...     pass
>>> head = delta.restrict(components=[Component(0, "head", 1)], model=model)
>>> len(head.restrict(layers=[1]))
0

A ``WeightDelta`` maps ``named_parameters(model)`` names (Hugging Face names) to fp32 tensors. It is
immutable: arithmetic, ``restrict`` and ``to`` return new deltas (tensors are shared, not copied, so
never modify them in place). Files are safetensors (no pickle) carrying the model identity, the
tensor shapes, the library versions and free-form user metadata.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens import delta_files
from extractive_lens.components import Component, owned_masks
from extractive_lens.models import model_identity, named_parameters
from extractive_lens.structure import model_structure


def layer_of(name: str, model: TransformerBridge) -> int | None:
    """The block index of parameter ``name`` in ``model`` (read off the bridge), or None outside
    the blocks (embeddings, final norm, unembedding)."""
    return model_structure(model).layer_of(name)


def _layers(model: TransformerBridge, names: Iterable[str]) -> dict[str, int]:
    structure = model_structure(model)
    return {n: structure.param_layer[n] for n in names if n in structure.param_layer}


def snapshot(model: TransformerBridge, names: Iterable[str] | None = None) -> dict[str, Tensor]:
    """Copies of the model's current parameters (all, or ``names``), for ``WeightDelta.between``."""
    params = named_parameters(model)
    return {n: params[n].detach().clone() for n in (params if names is None else names)}


class WeightDelta(Mapping[str, Float[Tensor, "..."]]):
    """An immutable mapping from parameter names to weight changes (fp32).

    Args:
        tensors: name -> change, names as in ``named_parameters(model)``.
        identity: ``model_identity`` of the model the delta was made for.
        metadata: free-form, JSON-serialisable (training config, seed, ...); kept by ``restrict``
            and ``to``, dropped by arithmetic.
        dtype: the stored dtype (default float32); tensors stay on their device.
        layers: parameter name -> block index for the names inside blocks (recorded from the
            model's structure by ``between`` / ``zeros_like`` and saved with the file), so that
            ``restrict(layers=...)`` works without the model.
    """

    def __init__(
        self,
        tensors: Mapping[str, Tensor],
        *,
        identity: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        dtype: torch.dtype = torch.float32,
        layers: Mapping[str, int] | None = None,
    ) -> None:
        self._tensors = {n: t.detach().to(dtype) for n, t in tensors.items()}
        self.dtype = dtype
        self.layers = (
            {n: int(i) for n, i in layers.items() if n in self._tensors} if layers else None
        )
        self.identity = dict(identity) if identity is not None else None
        self.metadata = dict(metadata or {})
        self.versions: dict[str, str] = {}  # library versions recorded in the file (set by load)

    # ------------------------------------------------------------------ construction

    @classmethod
    def between(
        cls,
        before: Mapping[str, Tensor] | TransformerBridge | str | os.PathLike,
        after: TransformerBridge | str | os.PathLike,
        *,
        metadata: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
        names: Iterable[str] | None = None,
        skip_unchanged: bool | None = None,
    ) -> WeightDelta:
        """``after - before`` in fp32, keyed on the model's parameter names.

        - ``between(snapshot(model), model)``: what in-place training changed (all names of the
          snapshot are kept).
        - ``between(model, finetuned)``: a finetuned model of the same architecture.
        - ``between(model, "finetuned_dir")``: a ``save_pretrained`` checkpoint (safetensors,
          sharded or not), read tensor by tensor, never loaded as a second model.
        - ``between("base_dir", model)``: the model minus a checkpoint of its base.

        Args:
            names: parameters to compare (default: all of the model's).
            skip_unchanged: leave out tensors that did not change (default: True except for the
                snapshot form), so a delta of a block-linear finetune holds only those weights.
            device: where the delta's tensors live.
        """
        from extractive_lens.checkpoints import difference

        tensors, identity, model = difference(before, after, names, skip_unchanged, device)
        return cls(tensors, identity=identity, metadata=metadata, layers=_layers(model, tensors))

    @classmethod
    def from_peft(
        cls,
        model: TransformerBridge,
        adapter_dir: str | os.PathLike,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> WeightDelta:
        """The weight change a PEFT LoRA adapter makes to ``model`` when merged: per target
        module ``scale * B @ A`` (``scale = lora_alpha / r``, or ``/ sqrt(r)`` with rslora;
        transposed for ``fan_in_fan_out``), read from ``adapter_config.json`` and
        ``adapter_model.safetensors`` without importing peft. DoRA, LoRA biases and
        ``modules_to_save`` are refused (they are not a sum of low-rank products)."""
        from extractive_lens.checkpoints import lora_deltas, read_adapter_config

        tensors = lora_deltas(named_parameters(model), adapter_dir)
        config = read_adapter_config(adapter_dir)
        info = {k: config.get(k) for k in ("base_model_name_or_path", "r", "lora_alpha")}
        meta = {"source": "peft", "adapter": str(adapter_dir), **info, **(metadata or {})}
        delta = cls(
            tensors, identity=model_identity(model), metadata=meta, layers=_layers(model, tensors)
        )
        delta.check_compatible(model)
        return delta

    @classmethod
    def zeros_like(
        cls, model: TransformerBridge, names: Iterable[str] | None = None
    ) -> WeightDelta:
        """A zero delta for the given parameters (default: all), on CPU."""
        params = named_parameters(model)
        names = list(params if names is None else names)
        return cls(
            {n: torch.zeros(params[n].shape) for n in names},
            identity=model_identity(model),
            layers=_layers(model, names),
        )

    # ------------------------------------------------------------------ mapping

    def __getitem__(self, name: str) -> Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    __eq__ = object.__eq__  # Mapping's == would compare tensors ambiguously: use ``equal``
    __hash__ = object.__hash__

    def equal(self, other: Mapping[str, Tensor]) -> bool:
        """Same names and bit-identical tensors (identity and metadata are not compared)."""
        return list(self) == list(other) and all(torch.equal(t, other[n]) for n, t in self.items())

    @property
    def names(self) -> list[str]:
        return list(self._tensors)

    @property
    def numel(self) -> int:
        return sum(t.numel() for t in self._tensors.values())

    def norm(self) -> float:
        """The Frobenius norm over all tensors."""
        return math.sqrt(sum(t.double().pow(2).sum().item() for t in self._tensors.values()))

    def __repr__(self) -> str:
        name = (self.identity or {}).get("name", "?")
        return (
            f"WeightDelta({len(self)} tensors, {self.numel:,} elements, norm={self.norm():.4g}, "
            f"model={name!r})"
        )

    def to(self, device: str | torch.device) -> WeightDelta:
        return self._new({n: t.to(device) for n, t in self._tensors.items()}, self.metadata)

    def _new(self, tensors: dict[str, Tensor], metadata: dict | None = None) -> WeightDelta:
        """A delta like this one (identity, dtype, layer map) holding ``tensors``: derived
        deltas never round a float64 delta to float32."""
        return WeightDelta(
            tensors,
            identity=self.identity,
            metadata=metadata,
            dtype=self.dtype,
            layers=self.layers,
        )

    # ------------------------------------------------------------------ arithmetic

    def __add__(self, other: object) -> WeightDelta:
        if not isinstance(other, WeightDelta):
            return NotImplemented
        a, b = self.identity, other.identity
        if a is not None and b is not None and not delta_files.same_model(a, b):
            raise ValueError(f"cannot combine deltas made for different models: {a} vs {b}")
        identity = a if a is not None else b
        if a is not None and b is not None and a.get("fingerprint") != b.get("fingerprint"):
            # e.g. Delta_F + a delta trained on theta + Delta_F: a chain whose base weights the
            # sum cannot know, so it keeps no fingerprint rather than a wrong one
            identity = {k: v for k, v in a.items() if k != "fingerprint"}
        out = dict(self._tensors)
        for n, t in other.items():
            if n not in out:
                out[n] = t
                continue
            if out[n].shape != t.shape:
                raise ValueError(f"{n}: shapes differ, {tuple(out[n].shape)} vs {tuple(t.shape)}")
            out[n] = out[n] + t.to(out[n].device)
        dtype = torch.promote_types(self.dtype, other.dtype)
        layers = {**(other.layers or {}), **(self.layers or {})} or None
        return WeightDelta(out, identity=identity, dtype=dtype, layers=layers)

    def __mul__(self, scale: object) -> WeightDelta:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            return NotImplemented
        return self._new({n: t * float(scale) for n, t in self._tensors.items()})

    __rmul__ = __mul__

    def __neg__(self) -> WeightDelta:
        return self._new({n: -t for n, t in self._tensors.items()})

    def __sub__(self, other: object) -> WeightDelta:
        return self + (-other) if isinstance(other, WeightDelta) else NotImplemented

    # ------------------------------------------------------------------ restriction

    def restrict(
        self,
        *,
        layers: Iterable[int] | None = None,
        components: Iterable[Component] | None = None,
        model: TransformerBridge | None = None,
    ) -> WeightDelta:
        """Keep only the given layers' parameters and/or the slices owned by ``components``.

        ``layers`` keeps parameters inside those blocks (embeddings and final norms are dropped);
        which block a parameter is in comes from ``model``'s structure, or else from the layer
        map the delta recorded when it was made. ``components`` (needs ``model``) keeps each
        component's owned slices and zeroes the rest of the tensor, so restricting to one head
        touches only that head's rows/columns; parameters no given component owns are dropped.
        Both: the intersection.
        """
        tensors = self._tensors
        if layers is not None:
            if model is not None:
                where = _layers(model, tensors)
            elif self.layers is not None:
                where = self.layers
            else:
                raise ValueError(
                    "restrict(layers=...) needs model=... : this delta records no layer map "
                    "(make it with WeightDelta.between / zeros_like, or pass the model)"
                )
            keep = set(layers)
            tensors = {n: t for n, t in tensors.items() if where.get(n) in keep}
        if components is not None:
            if model is None:
                raise ValueError("restrict(components=...) needs model=... to find owned slices")
            masks = owned_masks(components, model, tensors)
            tensors = {n: torch.where(masks[n], t, 0.0) for n, t in tensors.items() if n in masks}
        return self._new(dict(tensors), self.metadata)

    # ------------------------------------------------------------------ applying

    def check_compatible(self, model: TransformerBridge) -> None:
        """Raise ``ValueError`` unless every tensor matches a parameter of ``model`` in shape."""
        params = named_parameters(model)
        bad = [
            f"{n}: delta {tuple(t.shape)}, model "
            + (f"{tuple(params[n].shape)}" if n in params else "has no such parameter")
            for n, t in self._tensors.items()
            if n not in params or params[n].shape != t.shape
        ]
        if bad:
            mine, theirs = self.identity or {}, model_identity(model)
            raise ValueError(
                f"WeightDelta does not fit the model: delta was made for {mine.get('name', '?')} "
                f"({mine}), model is {theirs['name']} ({theirs}). {len(bad)} mismatches, first: "
                + "; ".join(bad[:5])
            )

    def apply(
        self, model: TransformerBridge, scale: float = 1.0, *, keep: str = "memory"
    ) -> Callable[[], None]:
        """Add ``scale * delta`` to the weights in place; return a function restoring them exactly.

        The sum is computed in fp32 (or in the parameter's dtype if wider: float64 models are not
        rounded), one parameter at a time, and cast to the parameter's dtype and device. The
        original values are kept, in the parameter's own dtype (never an fp32 copy), for a
        bit-exact restore (subtracting the delta again would not be exact): ``keep`` says where:
        ``"memory"`` beside the parameter, ``"cpu"`` in host memory (a model on a GPU keeps no
        second copy there), or ``"disk"`` in a temporary file read back one tensor at a time (peak
        memory then holds no copy at all; costs a write and a read of those weights).
        """
        from extractive_lens.delta_apply import apply_in_place

        self.check_compatible(model)
        return apply_in_place(named_parameters(model), self._tensors, scale, keep)

    @contextlib.contextmanager
    def applied(
        self, model: TransformerBridge, scale: float = 1.0, *, keep: str = "memory"
    ) -> Iterator[TransformerBridge]:
        """Context manager: the model with ``scale * delta`` added; restored bit-exactly on exit
        (also on exceptions), from saved copies of the original values, never by subtraction
        (``keep``: where those copies wait, see ``apply``)."""
        restore = self.apply(model, scale, keep=keep)
        try:
            yield model
        finally:
            restore()

    def hooked(
        self, model: TransformerBridge, scale: float = 1.0
    ) -> contextlib.AbstractContextManager[TransformerBridge]:
        """Context manager: the model computes theta + ``scale * delta`` without any linear
        weight being written or kept in a second copy (each touched linear layer runs with
        ``W + Delta W`` formed for that call and formed again in backward; see
        ``extractive_lens.delta_apply``). The same logits and gradients as ``applied``, bit for
        bit; for passes that read theta' (scores), not for training."""
        from extractive_lens.delta_apply import hooked

        self.check_compatible(model)
        return hooked(model, self._tensors, scale)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write a safetensors file atomically (``extractive_lens.delta_files``); refuse to
        replace one unless ``overwrite=True``."""
        header = {"identity": self.identity, "metadata": self.metadata, "layers": self.layers}
        return delta_files.write(path, self._tensors, header, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model: TransformerBridge | None = None,
        *,
        allow_other_weights: bool = False,
    ) -> WeightDelta:
        """Read a file written by ``save`` (never pickle); with ``model``, check that it fits.

        The fit check compares shapes and then the weights' fingerprint
        (``models.weights_fingerprint``): a delta trained from other weights of the same shapes
        (another seed, a finetuned model, another checkpoint) is refused with both fingerprints
        named, unless ``allow_other_weights=True``. Files without a fingerprint (older ones) are
        checked by shape only.
        """
        parts = delta_files.read(path)
        delta = cls(
            parts["tensors"],
            identity=parts["identity"],
            metadata=parts["metadata"],
            dtype=parts["dtype"],
            layers=parts["layers"],
        )
        delta.versions = parts["versions"]
        if model is not None:
            delta.check_compatible(model)
            if not allow_other_weights:
                delta.check_same_weights(model, source=str(path))
        return delta

    def check_same_weights(self, model: TransformerBridge, source: str = "the delta") -> None:
        """Raise ``ValueError`` unless ``model``'s weights carry the fingerprint recorded here."""
        delta_files.check_same_weights(self.identity, model, source)
