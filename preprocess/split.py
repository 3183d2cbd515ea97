"""Which documents go to the validation set: a hash of the cleaned text, whatever the order or workers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def text_hasher():
    """The hash of a document's text: fed its cleaned UTF-8 bytes in order, whole or in pieces
    (a document cut into piece blocks is hashed as its pieces arrive, none of them kept)."""
    return hashlib.blake2b(digest_size=8)


def in_valid(digest: bytes, fraction: float) -> bool:
    """A document goes to the validation set when the hash of its text falls below `fraction`."""
    return int.from_bytes(digest[:8], "big") < fraction * 2.0**64


def goes_to_valid(text: Iterable[bytes], fraction: float) -> bool:
    """The side of a document given its cleaned UTF-8 text, whole or in pieces (one rule for the
    fast path, the line-by-line path and documents joined from piece blocks)."""
    if not fraction:
        return False
    h = text_hasher()
    for part in text:
        h.update(part)
    return in_valid(h.digest(), fraction)
