"""Upstream scores (docs/method.md §3): U_{C,t} = <dR'/dy_{C,t} - dR/dy_{C,t}, y_{C,t} - y*_{C,t}>.

dR/dy and dR'/dy are the gradients of the score target under theta and theta' at C's output y
(= <g - g', y - y*> with g = dL/dy, L = -R). The counterfactual activation y* is C's activation
under theta on another test item of the same template, token-aligned (:mod:`.align`), or 0.

Averaging over an item's K counterfactual samples is exact through the mean counterfactual
activation, since U is linear in y*: mean_k U(y*_k) = U(mean_k y*_k).

**Memory bounded by the batch.** An item's counterfactuals may sit in other batches, so each
item's theta-activations y (the counterfactual pool) and gradient difference must outlive its
batch. They go to an ``ItemPool`` as soon as the batch is done: host memory up to
``POOL_MEMORY`` (16 MiB), a temporary file beyond; after the last batch the scores are computed
one item at a time, reading that item's y and dR'/dy - dR/dy and its counterfactuals' y back.
Memory then holds at most the pool's budget plus one batch's activations, whatever the number of
items; the file grows with the items (per item: positions x layers x (d_model + heads x d_head +
K/V heads x 2 d_head) x 4 bytes, twice).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from extractive_lens.scores.align import Alignment

#: Bytes of per-item tensors an ``ItemPool`` keeps in host memory before it spills to a file:
#: all of a small model's items (a 2-layer test model needs ~1 MiB for 20 items), a few of a real
#: model's (SmolLM2-135M: ~4 MiB per item), so peak memory stays within this plus one batch.
POOL_MEMORY = 16 * 2**20


class ItemPool:
    """Per-item tensors, read back one at a time: in host memory up to ``memory`` bytes, then in
    a temporary file (deleted on ``close``). Small runs never touch the disk; large ones keep
    memory bounded by ``memory`` plus one batch, whatever the number of items."""

    def __init__(self, memory: int | None = None) -> None:
        self.memory, self.used = POOL_MEMORY if memory is None else memory, 0
        self.held: dict[tuple[int, str], Tensor] = {}
        self.file = None  # a temporary file, opened at the first spill, closed by close()
        self.index: dict[tuple[int, str], tuple[int, torch.Size, torch.dtype]] = {}
        self.lengths: dict[int, int] = {}

    def put(self, item: int, name: str, t: Tensor) -> None:
        data = t.detach().cpu().contiguous()
        self.lengths[item] = data.shape[0]
        size = data.numel() * data.element_size()
        if self.used + size <= self.memory:
            self.held[item, name] = data.clone()  # not a view into the batch's tensor
            self.used += size
            return
        if self.file is None:
            self.file = tempfile.TemporaryFile()  # noqa: SIM115
        self.file.seek(0, 2)
        self.index[item, name] = (self.file.tell(), data.shape, data.dtype)
        data.view(torch.uint8).reshape(-1).numpy().tofile(self.file)

    def length(self, item: int) -> int:
        """The positions stored for ``item`` (its prompt's length)."""
        return self.lengths[item]

    def get(self, item: int, name: str, device: torch.device | str = "cpu") -> Tensor:
        if (item, name) in self.held:
            return self.held[item, name].to(device)
        offset, shape, dtype = self.index[item, name]
        size = shape.numel() * torch.tensor([], dtype=dtype).element_size()
        self.file.seek(offset)
        raw = torch.frombuffer(bytearray(self.file.read(size)), dtype=torch.uint8)
        return raw.view(dtype).reshape(shape).to(device)

    def close(self) -> None:
        self.held.clear()
        if self.file is not None:
            self.file.close()


def upstream_item(
    pool: ItemPool,
    kinds: Sequence[str],
    item: int,
    length: int,
    alignment: Alignment | None,
    counterfactuals: Tensor | None,
    device: torch.device | str = "cpu",
) -> dict[str, Tensor]:
    """U of one item for each component kind, ``[pos, layer, (head)]``, from the pool's
    ``y/<kind>`` and ``dg/<kind>`` (zero beyond each item's length)."""
    others = [] if counterfactuals is None else counterfactuals[item].tolist()
    assert alignment is not None or not others
    # one gather for all K counterfactuals: item j's rows start where the earlier ones end
    index, start = [], 0
    for j in others:
        index.append(alignment.counterfactual_positions(item, j, length) + start)
        start += pool.length(j)
    index = torch.cat(index).to(device) if others else None
    out = {}
    for kind in kinds:
        y = pool.get(item, f"y/{kind}", device)
        dg = pool.get(item, f"dg/{kind}", device)
        if not others:
            out[kind] = (dg * y).sum(-1)
            continue
        pooled = torch.cat([pool.get(j, f"y/{kind}", device) for j in others])
        y_star = pooled.index_select(0, index).unflatten(0, (len(others), length)).mean(0)
        out[kind] = (dg * (y - y_star)).sum(-1)
    return out


def pool_batch(
    pool: ItemPool, rows: list[int], y: Mapping[str, Tensor], dg: Mapping[str, Tensor]
) -> None:
    """Store one batch's y and gradient difference per item (``[batch, pos, ...]`` each kind)."""
    for kind in y:
        for b, item in enumerate(rows):
            pool.put(item, f"y/{kind}", y[kind][b])
            pool.put(item, f"dg/{kind}", dg[kind][b])
