"""Grouping the reader's pieces into batches for the workers, with what each batch accounts for."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from preprocess.reader import Cursor, Piece, Skip


@dataclass(slots=True)
class Batch:
    """Pieces to encode, plus the bookkeeping applied once their ids are written.

    `docs_file`/`docs_valid` describe each document that ends in this batch, in order.
    `cursor` is where reading resumes after this batch, or None when it ends inside a document
    (then no checkpoint may follow it).
    """

    texts: list[str] = field(default_factory=list)
    ends: list[bool] = field(default_factory=list)
    docs_file: list[int] = field(default_factory=list)
    docs_valid: list[bool] = field(default_factory=list)
    docs_bytes: list[int] = field(default_factory=list)
    docs_chars: list[int] = field(default_factory=list)
    stats: dict[int, Counter] = field(default_factory=dict)
    cursor: Cursor | None = None
    nbytes: int = 0


def in_valid(digest: bytes, fraction: float) -> bool:
    """A document goes to the validation set when the hash of its text falls below `fraction`."""
    return int.from_bytes(digest[:8], "big") < fraction * 2.0**64


def batches(items: Iterable[Piece | Skip], batch_bytes: int, valid_fraction: float) -> Iterator[Batch]:
    """Batches of about batch_bytes of text; a long document's pieces may span batches."""
    batch = Batch()
    hasher = None  # running hash of a document split into pieces
    pieces = doc_bytes = doc_chars = 0  # the current document so far
    for item in items:
        stats = batch.stats.setdefault(item.file, Counter())
        stats["replaced"] += item.replaced
        stats["nul_bytes"] += item.nul
        if isinstance(item, Skip):
            stats[item.reason] += 1
            batch.cursor = item.cursor if pieces == 0 else None
            continue
        batch.texts.append(item.text)
        batch.ends.append(item.ends_doc)
        batch.nbytes += item.nbytes
        pieces += 1
        doc_bytes += item.nbytes
        doc_chars += len(item.text)
        if valid_fraction > 0 and (hasher is not None or not item.ends_doc):
            hasher = hasher or hashlib.blake2b(digest_size=8)
            hasher.update(item.text.encode("utf-8"))
        if item.ends_doc:
            if valid_fraction > 0:
                digest = hasher.digest() if hasher else hashlib.blake2b(item.text.encode("utf-8"), digest_size=8).digest()
                batch.docs_valid.append(in_valid(digest, valid_fraction))
            else:
                batch.docs_valid.append(False)
            batch.docs_file.append(item.file)
            batch.docs_bytes.append(doc_bytes)
            batch.docs_chars.append(doc_chars)
            if pieces > 1:
                stats["split"] += 1
            batch.cursor = item.cursor
            hasher, pieces, doc_bytes, doc_chars = None, 0, 0, 0
        else:
            batch.cursor = None
        if batch.nbytes >= batch_bytes:
            yield batch
            batch = Batch()
    if batch.texts or batch.stats:
        yield batch
