"""The one hooked pass: read, edit and differentiate a model's activations at named hook points.

Every pass of the library that touches activations (the scores' three passes, ablations, mask
gates, exact patching, the bridge's structural probes) goes through :func:`hooked_run`, in one
vocabulary: TransformerLens hook names (``blocks.{i}.hook_mlp_out``, ``blocks.{i}.attn.hook_z``,
``blocks.{i}.attn.q.hook_in``, ...), which :mod:`extractive_lens.structure` derives for every
component. Three verbs, applied in this order at each hook:

* ``edit``: replace the activation by ``fn(x)`` (a substitution, an ablation, a gate);
* ``keep``: record its value, detached, after any edit;
* ``live``: put a fresh view of it on the forward path and hand it out, so that
  ``torch.autograd.grad(target, capture.live[name])`` is the derivative with respect to exactly
  this activation (the bridge may convert shapes around a hook; the view is what it returns).

The context checks on exit that every named hook fired, so a hook name that the bridge does not
have (a misspelt or architecture-specific name) is an error, never a silently unhooked pass or a
no-op ablation.

The paper-style reference (:mod:`extractive_lens.scores.reference`) deliberately does *not* use
this: it reads gradients with backward hooks, an independent path for checking the scores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

#: ``fn(x) -> x'``: what an edited hook point returns instead of its activation.
Edit = Callable[[Tensor], Tensor]


@dataclass
class Capture:
    """What a hooked pass read: filled while the forward runs, keyed by the names asked for
    (the bridge may report an alias under its canonical name; the caller's name wins)."""

    #: hook name -> the activation (after any edit), detached
    values: dict[str, Tensor] = field(default_factory=dict)
    #: hook name -> the activation on the autograd path (differentiate the output against it)
    live: dict[str, Tensor] = field(default_factory=dict)


@contextlib.contextmanager
def hooked_run(
    model: TransformerBridge,
    *,
    keep: Iterable[str] = (),
    edit: Mapping[str, Edit] | None = None,
    live: Iterable[str] = (),
    require: bool = True,
    into: Capture | None = None,
) -> Iterator[Capture]:
    """Context: every forward of ``model`` inside applies ``edit``, records ``keep`` and exposes
    ``live`` (module doc); on exit, raises ``RuntimeError`` naming any hook that never fired
    (``require=False``: a probe asking which hooks fire; the capture simply lacks them).
    ``into``: the ``Capture`` to fill (default: a new one), for edits that read a value kept
    earlier in the same forward (a linear map's edited output depends on its input).

    Several forwards inside overwrite the capture: one forward per context is the rule.
    """
    edit = dict(edit or {})
    keep, live = set(keep), set(live)
    capture = Capture() if into is None else into

    fired: set[str] = set()

    def make_hook(name: str):  # noqa: ANN202
        def hook(x: Tensor, hook: Any) -> Tensor | None:  # noqa: ARG001 (the HookPoint)
            fired.add(name)
            edited = name in edit
            if edited:
                x = edit[name](x)
            if name in keep:
                capture.values[name] = x.detach()
            if name in live:
                x = x.view_as(x)
                capture.live[name] = x
                return x
            return x if edited else None

        return hook

    names = list(dict.fromkeys([*edit, *keep, *live]))
    with model.hooks(fwd_hooks=[(n, make_hook(n)) for n in names]):
        yield capture
    # a context without any forward (nothing fired) may only have edited: nothing to read
    missing = [n for n in names if n not in fired] if fired or keep or live else []
    missing = missing if require else []
    if missing:
        raise RuntimeError(f"hooks did not fire: {sorted(missing)[:5]} ({len(missing)} in all)")


def substitution(value: Tensor) -> Edit:
    """An edit replacing the activation by ``value`` (reshaped and cast to the activation's)."""
    return lambda x: value.to(device=x.device, dtype=x.dtype).reshape(x.shape)
