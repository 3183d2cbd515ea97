"""How many ids a tokenizer can produce: what the dtype and the id checks are based on."""

from __future__ import annotations


def vocab_size(tokenizer) -> int:
    """len() counts entries; a vocabulary with holes in its ids needs room for the largest id."""
    return max(len(tokenizer), 1 + max(tokenizer.get_vocab().values(), default=-1))
