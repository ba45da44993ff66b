"""Informative scores (method §3): I_{C,t} = <dR/d out_t, DeltaW u_t> for each linear map of C.

Computed from one forward+backward under theta: each map's input u (forward) and the gradient of
R at its output (backward). No parameter gradient is ever formed. Per map the work is one extra
matrix product the size of the map's forward, done in fp32 whatever the model's dtype.

Positions: q, o (heads) and the MLP's maps land on the query/own position; k and v land on the key
position they are computed at. Summed over positions, a component's score is exactly the
first-order change <grad_{W_C} R, DeltaW_C> (= -<grad L, Delta> with L = -R).

``paper_mlp=True`` reproduces the published code's MLP score, which counts the W_out term twice
and drops W_in / W_gate (and the norm): a reproduction aid only, never the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from extractive_lens.scores.passes import ModelSpec, acc
from extractive_lens.structure import LinearMap


@dataclass(frozen=True)
class Coverage:
    """How much of a weight delta the components' informative scores account for.

    Attributes:
        covered_sq_norm: squared Frobenius norm of the delta on parameters some component owns.
        uncovered_sq_norm: the same outside them (embeddings, attention norms, q/k norms, final
            norm, attention output bias; see ``unowned_parameters``).
        uncovered: parameter name -> squared norm of its (nonzero) uncovered change.
        uncovered_informative: <grad R, Delta> over the uncovered parameters, summed over
            examples (what the scores leave out to first order); None when nothing is uncovered.
    """

    covered_sq_norm: float
    uncovered_sq_norm: float
    uncovered: dict[str, float] = field(default_factory=dict)
    uncovered_informative: float | None = None

    @property
    def uncovered_share(self) -> float:
        """Fraction of the delta's squared norm that no component owns (0 for an empty delta)."""
        total = self.covered_sq_norm + self.uncovered_sq_norm
        return self.uncovered_sq_norm / total if total > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "covered_sq_norm": self.covered_sq_norm,
            "uncovered_sq_norm": self.uncovered_sq_norm,
            "uncovered_share": self.uncovered_share,
            "uncovered": dict(self.uncovered),
            "uncovered_informative": self.uncovered_informative,
        }


def covered_names(spec: ModelSpec) -> set[str]:
    """Every parameter some linear map of a component reads (weights and owned biases)."""
    out: set[str] = set()
    for layer in spec.maps:
        for m in layer:
            out.add(m.weight)
            if m.bias is not None:
                out.add(m.bias)
    return out


def active_maps(
    spec: ModelSpec, delta: Mapping[str, Tensor], paper_mlp: bool = False
) -> list[tuple[int, LinearMap]]:
    """(layer, map) for every map whose weight or bias the delta changes."""
    out = []
    for layer, maps in enumerate(spec.maps):
        for m in maps:
            if paper_mlp and m.owner == "mlp" and m.role != "down":
                continue
            if m.weight in delta or (m.bias is not None and m.bias in delta):
                out.append((layer, m))
    return out


def coverage_of(spec: ModelSpec, delta: Mapping[str, Tensor]) -> tuple[Coverage, list[str]]:
    """The coverage report without ``uncovered_informative``, and the uncovered nonzero names."""
    covered = covered_names(spec)
    cov, unc, names = 0.0, 0.0, {}
    for n, t in delta.items():
        sq = float(t.detach().double().pow(2).sum())
        if n in covered:
            cov += sq
        elif sq > 0:
            unc += sq
            names[n] = sq
    return Coverage(cov, unc, names), list(names)


def map_terms(
    m: LinearMap,
    u: Tensor,
    d: Tensor,
    dw: Tensor | None,
    db: Tensor | None,
) -> Float[Tensor, "batch pos *head"]:
    """<d_t, DeltaW u_t (+ Delta b)> per position (and per head for head-split maps), in fp32."""
    u, d = acc(u), acc(d)
    # Head-split maps' hooks are [b, p, head, d_head]; a bridge that keeps them flat gets split.
    if m.split == "in" and u.ndim == 3:
        u = einops.rearrange(u, "b p (h d) -> b p h d", h=m.n_split)
    if m.split == "out" and d.ndim == 3:
        d = einops.rearrange(d, "b p (h d) -> b p h d", h=m.n_split)
    if m.split == "in":  # W_O: heads own input columns; u is [b, p, head, d_head]
        if dw is None:
            return u.new_zeros(u.shape[:-1])
        back = d @ (dw.T if m.transposed else dw)  # [b, p, n_heads * d_head]
        return (back.view(u.shape) * u).sum(-1)
    if dw is None:
        prod = torch.zeros(d.shape[:2] + (d.shape[2:].numel(),), device=d.device)
    elif m.split == "diag":
        prod = u * dw
    else:
        prod = u @ (dw if m.transposed else dw.T)
    if db is not None:
        prod = prod + db
    if m.split == "out":  # q/k/v: heads own output rows; d is [b, p, head, d_head]
        return (prod.view(d.shape) * d).sum(-1)
    return (prod * d.reshape(prod.shape)).sum(-1)


def informative_batch(
    spec: ModelSpec,
    delta: Mapping[str, Tensor],
    maps: list[tuple[int, LinearMap]],
    values: Mapping[str, Tensor],
    grads: Mapping[str, Tensor],
    shape: tuple[int, int],
    paper_mlp: bool = False,
) -> dict[str, Tensor]:
    """Informative scores of one batch: ``{"mlp": [b,p,L], "heads": [b,p,L,H], "kv_heads": ...}``.

    ``delta`` must already be on the model's device, in the accumulation dtype.
    """
    b, p = shape
    device = next(iter(grads.values())).device if grads else "cpu"
    dtype = acc(next(iter(grads.values()))).dtype if grads else torch.float32
    out = {
        "mlp": torch.zeros(b, p, spec.n_layers, device=device, dtype=dtype),
        "heads": torch.zeros(b, p, spec.n_layers, spec.n_heads, device=device, dtype=dtype),
    }
    if spec.gqa:
        out["kv_heads"] = torch.zeros(
            b, p, spec.n_layers, spec.n_kv_heads, device=device, dtype=dtype
        )
    for layer, m in maps:
        terms = map_terms(
            m,
            values[m.u_hook],
            grads[m.d_hook],
            delta.get(m.weight),
            delta.get(m.bias) if m.bias is not None else None,
        )
        if paper_mlp and m.owner == "mlp":
            terms = 2 * terms
        out[m.owner][:, :, layer] += terms
    return out
