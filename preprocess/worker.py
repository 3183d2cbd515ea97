"""What runs inside each tokenizer worker process (spawned: no state inherited).

A task is a Block of whole lines (or one piece of a too-long line) or the Rows of a Parquet or
Arrow column. The worker turns it into documents (cleaning, decoding, JSON, skipping, cutting
long ones) with `preprocess.reader.task_items`, which defines the rules, tokenizes them and
returns their ids with EOS appended, plus the counts for the manifest. A block of clean UTF-8
text with `\\n` (or only `\\r\\n`) line ends and no long line takes a shortcut of bytes and str
methods, which gives what the rules give for such text (tests/test_preprocess_blocks.py checks it).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

import numpy as np

from preprocess.blocks import BOM, Block
from preprocess.split import goes_to_valid
from preprocess.columnar import Rows
from preprocess.engines import EngineSpec, make_encoder, to_array
from preprocess.errors import TokenizerError
from preprocess.inputs import InputFile
from preprocess.reader import Piece, Skip, task_items

_STATE: dict = {}


@dataclass(frozen=True, slots=True)
class Settings:
    files: list[InputFile]
    text_key: str
    errors: str
    max_doc_bytes: int
    eos_id: int | None
    dtype: str
    vocab_size: int
    valid_fraction: float


@dataclass(slots=True)
class Encoded:
    """A block's documents: ids (EOS included), and per document its length, side, size."""

    tokens: np.ndarray
    lengths: np.ndarray  # int64, per document (a piece block: its one piece)
    valid: np.ndarray  # bool, per document: goes to the validation split
    nbytes: np.ndarray  # int64, UTF-8 bytes of each document's text
    nchars: np.ndarray  # int64, characters of each document's text
    stats: dict[str, int] = field(default_factory=dict)
    piece_text: bytes | None = None  # a piece block's cleaned text, for its document's hash


def init(spec: EngineSpec, settings: Settings, in_worker: bool = True) -> None:
    if in_worker:
        # Ctrl-C reaches the whole process group: the parent decides what happens, not the workers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One thread per engine, whichever it is: the worker processes are the parallelism, and
    # --workers 0 means one core.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _STATE.clear()  # in this process (--workers 0, library use) an earlier run may have failed here
    try:
        _STATE.update(encode=make_encoder(spec), settings=settings)
    except Exception as e:
        # Keep the error: the first task reports it to the parent, which stops with one line.
        _STATE["error"] = f"a tokenizer worker could not load the tokenizer ({type(e).__name__}: {e})"


def process(task: Block | Rows) -> Encoded:
    if "error" in _STATE:
        raise TokenizerError(_STATE["error"])
    s: Settings = _STATE["settings"]
    if not task.whole:
        return _piece(task, s)
    docs = _fast(task, s) if isinstance(task, Block) and s.files[task.file].fmt == "txt" else None
    if docs is None:
        docs = _slow(task, s)
    pieces, ends, nbytes, nchars, valid, stats = docs
    ids = _STATE["encode"](pieces)
    tokens, lengths = to_array(ids, s.eos_id, ends, np.dtype(s.dtype), s.vocab_size)
    if len(ends) and not all(ends):  # documents cut into pieces: piece lengths -> document lengths
        starts = np.flatnonzero(np.concatenate(([True], np.asarray(ends[:-1], dtype=bool))))
        lengths = np.add.reduceat(lengths, starts)
    return Encoded(tokens, lengths.astype(np.int64), np.asarray(valid, dtype=bool),
                   np.asarray(nbytes, dtype=np.int64), np.asarray(nchars, dtype=np.int64), stats)


def _fast(block: Block, s: Settings):
    """Clean UTF-8 with \\n or \\r\\n line ends (not mixed with a lone \\r) and no line over
    max_doc_bytes: whole-block operations, one list comprehension per block. None when the
    block needs the line-by-line rules."""
    data = block.data
    if b"\0" in data or (block.offset == 0 and data.startswith(BOM)):
        return None
    if b"\r" in data:
        # When every "\r" begins a "\r\n", the lines, and the bytes of each, are those of the
        # text with "\n" line ends (a line's bytes never include its line end).
        data = data.replace(b"\r\n", b"\n")
        if b"\r" in data:
            return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    raw = data.split(b"\n")
    lines = text.split("\n")
    if data.endswith(b"\n") or not data:  # the final line end leaves an empty tail, not an empty line
        raw.pop()
        lines.pop()
    sizes = list(map(len, raw))
    if sizes and max(sizes) > s.max_doc_bytes:
        return None
    keep = [i for i, line in enumerate(lines) if line and not line.isspace()]
    empty = lines.count("")
    pieces = [lines[i] for i in keep]
    valid = [goes_to_valid((raw[i],), s.valid_fraction) for i in keep] if s.valid_fraction else [False] * len(keep)
    stats = {"empty": empty, "whitespace": len(lines) - len(keep) - empty}
    return pieces, [True] * len(keep), [sizes[i] for i in keep], list(map(len, pieces)), valid, stats


def _slow(task: Block | Rows, s: Settings):
    """Line by line (or row by row) through preprocess.reader's rules."""
    pieces, ends, nbytes, nchars, valid = [], [], [], [], []
    stats: dict[str, int] = {}
    doc_bytes = doc_chars = n_pieces = 0
    hasher_parts: list[bytes] = []
    for item in task_items(task, s.files, text_key=s.text_key, errors=s.errors, max_doc_bytes=s.max_doc_bytes):
        _count_cleaning(item, stats)
        if not isinstance(item, Piece):
            stats[item.reason] = stats.get(item.reason, 0) + 1
            continue
        pieces.append(item.text)
        ends.append(item.ends_doc)
        doc_bytes += item.nbytes
        doc_chars += len(item.text)
        n_pieces += 1
        if s.valid_fraction:
            hasher_parts.append(item.text.encode("utf-8"))
        if item.ends_doc:
            nbytes.append(doc_bytes)
            nchars.append(doc_chars)
            valid.append(goes_to_valid(hasher_parts, s.valid_fraction))
            if n_pieces > 1:
                stats["split"] = stats.get("split", 0) + 1
            doc_bytes = doc_chars = n_pieces = 0
            hasher_parts = []
    return pieces, ends, nbytes, nchars, valid, stats


def _piece(block: Block, s: Settings) -> Encoded:
    """One piece of a line too long to tokenize whole; the main process joins the pieces."""
    items = list(task_items(block, s.files, text_key=s.text_key, errors=s.errors, max_doc_bytes=s.max_doc_bytes))
    piece = items[0]  # a piece is never skipped: only whole empty lines are
    stats: dict[str, int] = {}
    _count_cleaning(piece, stats)
    ids = _STATE["encode"]([piece.text])
    tokens, lengths = to_array(ids, s.eos_id, [block.last], np.dtype(s.dtype), s.vocab_size)
    text = piece.text.encode("utf-8") if s.valid_fraction else None
    return Encoded(tokens, lengths.astype(np.int64), np.zeros(1, dtype=bool), np.array([piece.nbytes]),
                   np.array([len(piece.text)]), stats, text)


def _count_cleaning(item: Piece | Skip, stats: dict[str, int]) -> None:
    """Add what cleaning a line or value did (characters replaced, NUL bytes removed) to stats."""
    for key, n in (("replaced", item.replaced), ("nul_bytes", item.nul)):
        if n:
            stats[key] = stats.get(key, 0) + n
