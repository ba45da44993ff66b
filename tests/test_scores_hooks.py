"""The hook points the scores read hold exactly what ``scores.passes`` says they hold."""

from __future__ import annotations

import pytest
import torch

from extractive_lens.components import unowned_parameters
from extractive_lens.metrics import encode, forward
from extractive_lens.models import named_parameters
from extractive_lens.scores.informative import covered_names
from extractive_lens.scores.passes import model_spec

PROMPTS = [
    ("The people in the city Grace Miller is from speak", "French"),
    ("Tom lives in", "Rome"),
]


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_mha", "tiny_gpt2"])
def test_linear_maps_match_their_hooks(request, name, precision):
    """For every map: output hook == W @ input hook (+ b), with the weights perturbed so that
    norm weights and biases are not trivially one / zero."""
    model = request.getfixturevalue(name)
    spec = model_spec(model)
    params = named_parameters(model)
    saved = {n: p.detach().clone() for n, p in params.items()}
    gen = torch.Generator().manual_seed(0)
    seen = {}

    def grab(h):
        def hook(x, hook):
            seen[h] = x.detach().clone()

        return hook

    hooks = {h for layer in spec.maps for m in layer for h in (m.u_hook, m.d_hook)}
    try:
        with torch.no_grad():
            for p in params.values():
                if p.ndim == 1:
                    p.add_(0.3 * torch.randn(p.shape, generator=gen))
        batch = encode(model.tokenizer, PROMPTS, with_answers=False)
        with torch.no_grad(), model.hooks(fwd_hooks=[(h, grab(h)) for h in hooks]):
            forward(model, batch)
        for layer in spec.maps:
            for m in layer:
                u, out = seen[m.u_hook].flatten(2), seen[m.d_hook].flatten(2)
                w = params[m.weight]
                mat = w if m.transposed else w.T
                y = u * w if m.split == "diag" else u @ mat
                size = u.abs() * w.abs() if m.split == "diag" else u.abs() @ mat.abs()
                biases = [m.bias] if m.bias is not None and m.bias in params else []
                if m.role == "o" and name == "tiny_gpt2":
                    biases.append(m.weight.replace("weight", "bias"))  # unowned output bias
                for b in biases:
                    y, size = y + params[b], size + params[b].abs()
                precision.check(y, out, eps=precision.eps(model), scale=size, msg=m.weight)
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_mha", "tiny_gpt2"])
def test_maps_cover_exactly_the_owned_parameters(request, name):
    model = request.getfixturevalue(name)
    params = set(named_parameters(model))
    assert covered_names(model_spec(model)) & params == params - set(unowned_parameters(model))


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2"])
def test_target_from_last_positions_only_equals_full_logits(request, name, precision):
    """R from a forward that unembeds only the last prompt positions (used by the scores and by
    the tests' exact interventions) equals R from the full logits."""
    from extractive_lens.data import first_token_ids
    from extractive_lens.metrics import answer_index
    from extractive_lens.scores.passes import score_target, target_forward

    model = request.getfixturevalue(name)
    options = ["French", "Rome", "Paris"]
    batch = encode(model.tokenizer, PROMPTS, with_answers=False)  # right-padded, two lengths
    ids = torch.tensor(first_token_ids(model.tokenizer, options))
    answers = answer_index(PROMPTS, options)
    with torch.no_grad():
        logits = forward(model, batch)
        full = score_target(logits, batch, answers, ids)
        fast = target_forward(model, batch, answers, ids)
    # R = answer logit - mean option logit: it rounds at the size of the logits
    precision.check(fast, full, eps=precision.eps(model), scale=logits.abs().max())
