"""What pretraining tracks: mean ranks of a world's pretraining entities, on the plain HF model.

:func:`eval_sets` names the rows of :attr:`PretrainResult.history
<extractive_lens.worlds.pretrain.PretrainResult.history>`; :func:`hf_mean_ranks` evaluates them
on the Hugging Face model being trained (before it is wrapped in a bridge).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from extractive_lens.data import Example, first_token_ids
from extractive_lens.metrics import encode, ranks_from_logits
from extractive_lens.worlds.relations import FACT_ONLY, KNOWN, Fact
from extractive_lens.worlds.world import World


def eval_sets(world: World) -> dict[str, tuple[list[Example], tuple[str, ...]]]:
    """What pretraining tracks: name -> (examples, options), all on pretraining entities.

    ``known_facts`` (known people -> city, among all cities), ``known_impl`` (known people ->
    language, trained), ``latent_impl`` (fact-only people -> language: never trained, a latent
    two-hop), ``mayor_impl`` (known cities' landmark -> mayor, trained) and ``background``
    (city -> language).
    """
    cities = tuple(c.name for c in world.cities)

    def person_rows(relation: str, group: str) -> list[Example]:
        out = []
        for p in world.people_in(group):
            c = world.city(p.city)
            out.append(Fact(relation, p.name, c.name if relation == "lives_in" else c.language))
        return [f.render() for f in out]

    return {
        "known_facts": (person_rows("lives_in", KNOWN), cities),
        "known_impl": (person_rows("speaks", KNOWN), world.languages),
        "latent_impl": (person_rows("speaks", FACT_ONLY), world.languages),
        "mayor_impl": (
            [Fact("landmark_mayor", c.landmark, c.mayor).render() for c in world.cities_in(KNOWN)],
            world.mayors,
        ),
        "background": (
            [Fact("city_language", c.name, c.language).render() for c in world.cities],
            world.languages,
        ),
    }


def hf_mean_ranks(
    hf: Any, tokenizer: Any, sets: dict[str, tuple[Sequence[Example], Sequence[str]]]
) -> dict[str, float]:
    """Mean rank of each eval set on a plain HF model (same encoding as ``metrics.mean_rank``)."""
    out = {}
    with torch.no_grad():
        for name, (examples, options) in sets.items():
            batch = encode(tokenizer, list(examples), with_answers=False)
            logits = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            last = logits[torch.arange(len(examples)), batch.last_prompt]
            option_ids = torch.tensor(first_token_ids(tokenizer, options))
            scores = last[:, option_ids]
            index = {o: i for i, o in enumerate(options)}
            answers = torch.tensor([index[e.answer] for e in examples])
            out[name] = ranks_from_logits(scores, answers).float().mean().item()
    return out
