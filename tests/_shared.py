"""Helpers shared by the score and family tests (independent of the code under test)."""

from __future__ import annotations

import contextlib

import torch

from extractive_lens.components import components, unowned_parameters
from extractive_lens.data import first_token_ids
from extractive_lens.metrics import answer_index, encode
from extractive_lens.models import named_parameters
from extractive_lens.scores.passes import target_forward


def target(model, examples, options):
    """R per example, computed directly from the logits."""
    batch = encode(model.tokenizer, examples, with_answers=False)
    ids = torch.tensor(first_token_ids(model.tokenizer, options))
    with torch.no_grad():
        return target_forward(model, batch, answer_index(examples, options), ids)


@contextlib.contextmanager
def perturbed(model, delta, alpha):
    """theta + alpha * delta in the parameters' own dtype (WeightDelta applies in fp32)."""
    params = named_parameters(model)
    saved = {n: params[n].detach().clone() for n in delta}
    with torch.no_grad():
        for n, d in delta.items():
            params[n].add_(alpha * d.to(params[n].dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for n, s in saved.items():
                params[n].copy_(s)


def assert_ownership_partitions(model) -> None:
    """Owned slices plus unowned parameters cover each element exactly once: no double count."""
    params = named_parameters(model)
    count = {n: torch.zeros(p.shape, dtype=torch.int32) for n, p in params.items()}
    for c in components(model):
        for s in c.owned(model):
            count[s.param][s.index(count[s.param].ndim)] += 1
    for name in unowned_parameters(model):
        count[name] += 1
    for name, c in count.items():
        assert torch.all(c == 1), f"{name}: coverage {c.unique().tolist()}"
