"""Tokenisation, the answer loss, and the ranking metric of docs/method.md §1.

>>> from extractive_lens import tiny_model, first_hop, mean_rank
>>> model, data = tiny_model(), first_hop()
>>> 0 <= mean_rank(model, data.facts, data.fact_options) <= 19
True

Prompts and answers are tokenised separately and concatenated (prompt ids + ids of " " + answer),
so the prompt's tokens never depend on the answer and the first answer token is exactly the option
token the metric reads. Batches are right-padded with an attention mask: causal attention never
looks right, so padding cannot change a real position's logits, and every number here is the same
at any batch size (up to float rounding; ranks exactly).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from extractive_lens.data import Example, first_token_ids, validate

ExampleLike = Example | tuple[str, str]


def as_examples(examples: Iterable[ExampleLike], split: str = "examples") -> list[Example]:
    """Accept ``Example``s or ``(prompt, answer)`` pairs; ``split`` names them in errors."""
    out = [e if isinstance(e, Example) else Example(*e) for e in examples]
    if not out:
        raise ValueError(f"No examples given: the split {split!r} is empty.")
    return out


@dataclass(frozen=True)
class Batch:
    """A right-padded batch of prompts, optionally followed by their answers.

    Attributes:
        input_ids: token ids, padded on the right with the tokenizer's pad token.
        attention_mask: 1 on real tokens, 0 on padding.
        last_prompt: index of each example's last prompt token (where the metric reads logits).
        labels: the next-token target at each position on answer tokens, -100 elsewhere.
    """

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    last_prompt: Int[Tensor, " batch"]
    labels: Int[Tensor, "batch pos"]

    @property
    def loss_mask(self) -> Bool[Tensor, "batch pos"]:
        return self.labels != -100

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            *(
                t.to(device)
                for t in (self.input_ids, self.attention_mask, self.last_prompt, self.labels)
            )
        )


def prompt_ids(tokenizer: Any, prompt: str, prepend_bos: bool | None = None) -> list[int]:
    """Token ids of a prompt with the tokenizer's own BOS convention (or forced on/off)."""
    ids = list(tokenizer(prompt, add_special_tokens=True).input_ids)
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    if ids and eos is not None and ids[-1] == eos and not prompt.endswith(str(tokenizer.eos_token)):
        ids = ids[:-1]  # tokenizers that append EOS (T5-style) would end every prompt early
    has_bos = bool(ids) and bos is not None and ids[0] == bos
    if prepend_bos and not has_bos:
        ids = [bos, *ids]
    elif prepend_bos is False and has_bos:
        ids = ids[1:]
    return ids


def encode(
    tokenizer: Any,
    examples: Sequence[ExampleLike],
    *,
    with_answers: bool = True,
    prepend_bos: bool | None = None,
) -> Batch:
    """Tokenise examples into one right-padded ``Batch`` (answers appended when asked).

    ``tokenizer`` may also be a model, whose tokenizer is used. ``prepend_bos=None`` follows the
    tokenizer's own convention (``load_model`` keeps the model's native one).
    """
    tokenizer = getattr(tokenizer, "tokenizer", None) or tokenizer
    rows, lasts, label_rows = [], [], []
    for ex in as_examples(examples):
        ids = prompt_ids(tokenizer, ex.prompt, prepend_bos)
        answer = (
            tokenizer(" " + ex.answer, add_special_tokens=False).input_ids if with_answers else []
        )
        full = ids + list(answer)
        labels = [-100] * len(full)
        for t in range(len(ids) - 1, len(full) - 1):
            labels[t] = full[t + 1]
        rows.append(full)
        lasts.append(len(ids) - 1)
        label_rows.append(labels)
    return _padded(tokenizer, rows, lasts, label_rows)


def prompt_batch(tokenizer: Any, ids: Sequence[list[int]]) -> Batch:
    """Prompts already tokenised (``prompt_ids``) as one right-padded ``Batch``, no answers:
    ``encode(..., with_answers=False)`` without tokenising again."""
    tokenizer = getattr(tokenizer, "tokenizer", None) or tokenizer
    rows = [list(row) for row in ids]
    labels = [[-100] * len(row) for row in rows]
    return _padded(tokenizer, rows, [len(row) - 1 for row in rows], labels)


def _padded(tokenizer: Any, rows: list[list[int]], lasts: list[int], label_rows: list) -> Batch:
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, lab) in enumerate(zip(rows, label_rows, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, : len(row)] = torch.tensor(lab)
    return Batch(input_ids, mask, torch.tensor(lasts), labels)


def batches(examples: Sequence[Example], batch_size: int) -> Iterable[list[Example]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i in range(0, len(examples), batch_size):
        yield list(examples[i : i + batch_size])


def model_device(model: TransformerBridge) -> torch.device:
    return next(model.original_model.parameters()).device


def forward(model: TransformerBridge, batch: Batch) -> Float[Tensor, "batch pos vocab"]:
    """Logits of a padded batch (the attention mask keeps padding invisible)."""
    batch = batch.to(model_device(model))
    return model(batch.input_ids, attention_mask=batch.attention_mask)


def answer_loss(logits: Float[Tensor, "batch pos vocab"], batch: Batch) -> Float[Tensor, ""]:
    """Mean cross-entropy over answer tokens only (each answer token weighs the same)."""
    labels = batch.labels.to(logits.device)
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100
    )


def last_prompt_logits(
    logits: Float[Tensor, "batch pos vocab"], batch: Batch
) -> Float[Tensor, "batch vocab"]:
    index = batch.last_prompt.to(logits.device)
    return logits[torch.arange(len(index), device=logits.device), index]


def last_prompt_forward(model: TransformerBridge, batch: Batch) -> Float[Tensor, "batch vocab"]:
    """The logits at each row's last prompt position from a forward that unembeds only those
    positions (``logits_to_keep``: the unembedding is a small model's largest matrix)."""
    device = model_device(model)
    keep, where = torch.unique(batch.last_prompt, sorted=True, return_inverse=True)
    logits = model(
        batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        logits_to_keep=keep.to(device),
    )
    return logits[torch.arange(len(where), device=logits.device), where.to(logits.device)]


def option_logits(
    model: TransformerBridge,
    examples: Sequence[ExampleLike],
    options: Sequence[str],
    *,
    batch_size: int = 32,
    prepend_bos: bool | None = None,
) -> Float[Tensor, "example option"]:
    """Logits of every option's first token at each example's last prompt position."""
    examples = as_examples(examples)
    validate(examples, model.tokenizer, options=options)
    option_ids = torch.tensor(first_token_ids(model.tokenizer, options))
    out = []
    with torch.no_grad():
        for chunk in batches(examples, batch_size):
            batch = encode(model.tokenizer, chunk, with_answers=False, prepend_bos=prepend_bos)
            last = last_prompt_logits(forward(model, batch), batch)
            out.append(last[:, option_ids.to(last.device)].float().cpu())
    return torch.cat(out)


def answer_index(
    examples: Sequence[ExampleLike], options: Sequence[str]
) -> Int[Tensor, " example"]:
    index = {o: i for i, o in enumerate(options)}
    return torch.tensor([index[e.answer] for e in as_examples(examples)])


def ranks_from_logits(
    logits: Float[Tensor, "example option"], answers: Int[Tensor, " example"]
) -> Int[Tensor, " example"]:
    """0-based rank of the correct option: how many other options score at least as high.

    Ties count against the answer, so a model whose option logits are all equal gets the worst
    rank (``n_options - 1``), never the best. A row holding a NaN or infinite logit is ranked
    last for the same reason: it is no evidence that the answer was preferred.
    """
    correct = logits.gather(1, answers[:, None])
    at_least = (logits >= correct).sum(1) - 1  # the answer itself is >= itself
    finite = torch.isfinite(logits).all(1)
    return torch.where(finite, at_least, logits.shape[1] - 1)


#: Option logits whose spread (max - min) is below this fraction of their scale are "tied".
COLLAPSE_RTOL = 1e-6


def collapsed(
    logits: Float[Tensor, "example option"], rtol: float = COLLAPSE_RTOL
) -> Bool[Tensor, " example"]:
    """Rows whose option logits carry no preference: non-finite, or all equal up to ``rtol``.

    The spread is compared with ``rtol * max(1, max |logit|)``, i.e. with the resolution of the
    logits themselves, so a healthy model (spreads of whole logits) never trips it while a
    destroyed one (every option at exactly the same value) always does.
    """
    finite = torch.isfinite(logits).all(1)
    safe = torch.where(torch.isfinite(logits), logits, 0.0)
    spread = safe.max(1).values - safe.min(1).values
    scale = safe.abs().max(1).values.clamp(min=1.0)
    return ~finite | (spread <= rtol * scale)


def ranks(
    model: TransformerBridge, examples: Sequence[ExampleLike], options: Sequence[str], **kw: Any
) -> Int[Tensor, " example"]:
    """Per-example 0-based rank of the correct answer among ``options`` (0 = best)."""
    logits = option_logits(model, examples, options, **kw)
    return ranks_from_logits(logits, answer_index(examples, options))


def mean_rank(
    model: TransformerBridge, examples: Sequence[ExampleLike], options: Sequence[str], **kw: Any
) -> float:
    """Mean 0-based rank of the correct option; chance is (len(options) - 1) / 2."""
    return ranks(model, examples, options, **kw).float().mean().item()


def logit_margin(
    logits: Float[Tensor, "example option"], answers: Int[Tensor, " example"]
) -> Float[Tensor, " example"]:
    """The score target R = logit of the answer minus the mean logit over the options."""
    return logits.gather(1, answers[:, None]).squeeze(1) - logits.mean(1)
