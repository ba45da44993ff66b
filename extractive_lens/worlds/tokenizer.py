"""A word-level tokenizer for a world, built offline from its vocabulary.

Every whitespace-separated word of every template and every name is one token, so every entity
and every answer is a single token and the first tokens of any option set are distinct. The
tokenizer prepends ``<bos>`` (like Llama's), pads with ``<pad>`` and maps unseen words to ``<unk>``.

>>> from extractive_lens.worlds import make_world, build_tokenizer
>>> tok = build_tokenizer(make_world())
>>> text = "The people in the city " + make_world().people[0].name + " is from speak"
>>> tok.decode(tok(text, add_special_tokens=False).input_ids) == text
True
"""

from __future__ import annotations

from typing import Any

from extractive_lens.worlds.relations import RELATIONS
from extractive_lens.worlds.world import World

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def world_vocabulary(world: World) -> list[str]:
    """Special tokens, then every template word and name of the world, sorted."""
    words = {w for r in RELATIONS.values() for t in r.templates for w in t.split() if w != "{}"}
    words |= set(world.names())
    return [*SPECIAL_TOKENS, *sorted(words)]


def build_tokenizer(world: World) -> Any:
    """A ``PreTrainedTokenizerFast`` over :func:`world_vocabulary` (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(world_vocabulary(world))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        # The bridge rebuilds tokenizers without add_bos_token from name_or_path; this one
        # already prepends <bos> and exists only in memory.
        add_bos_token=True,
        add_eos_token=False,
        name_or_path=f"world-{world.config.seed}-tokenizer",
    )
