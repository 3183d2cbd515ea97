"""Token files other tools use: llm.c / modded-nanogpt `.bin` shards and nanoGPT's raw `.bin`.

llm.c: a header of 256 little-endian int32 (magic 20240520, version 1, token count, rest 0)
followed by that many uint16 tokens. nanoGPT: nothing but uint16 tokens (`train.bin`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from shards.errors import ShardFormatError, UsageError
from shards.layout import TOKENIZER_DIR
from shards.reader import Dataset
from shards.vocab import vocab_size
from shards.writer import DatasetWriter

LLMC_MAGIC = 20240520
LLMC_VERSION = 1
LLMC_HEADER_INTS = 256
LLMC_HEADER_BYTES = LLMC_HEADER_INTS * 4
_CHUNK = 16 << 20  # tokens per step: memory stays bounded for any file size


LLMC_MAX_TOKENS = 2**31 - 1  # the header counts tokens in an int32


def llmc_header(num_tokens: int) -> bytes:
    header = np.zeros(LLMC_HEADER_INTS, dtype="<i4")
    header[:3] = (LLMC_MAGIC, LLMC_VERSION, num_tokens)
    return header.tobytes()


def read_llmc_header(path: Path) -> int:
    """The token count of an llm.c .bin file, after checking magic, version and size."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(LLMC_HEADER_BYTES)
    if len(head) < LLMC_HEADER_BYTES:
        raise ShardFormatError(f"{path}: shorter than an llm.c header ({size} bytes < {LLMC_HEADER_BYTES})")
    magic, version, count = (int(x) for x in np.frombuffer(head, dtype="<i4")[:3])
    if magic != LLMC_MAGIC:
        raise ShardFormatError(f"{path}: bad magic {magic} (expected {LLMC_MAGIC}); not an llm.c token file")
    if version != LLMC_VERSION:
        raise ShardFormatError(f"{path}: llm.c version {version} is not supported (expected {LLMC_VERSION}: uint16 tokens)")
    if size != LLMC_HEADER_BYTES + 2 * count:
        raise ShardFormatError(f"{path}: header says {count} tokens ({LLMC_HEADER_BYTES + 2 * count} bytes) "
                               f"but the file has {size} bytes (truncated?)")
    return count


def _require_uint16(ds: Dataset, fmt: str) -> None:
    if ds.dtype.itemsize != 2:
        raise UsageError(f"{ds.path}: its {ds.vocab_size:,}-token vocabulary needs uint32 ids, but {fmt} files hold "
                         "uint16; export is impossible without truncating ids")


def _chunks(ds: Dataset) -> Iterator[np.ndarray]:
    for start in range(0, ds.num_tokens, _CHUNK):
        yield ds.read(start, min(start + _CHUNK, ds.num_tokens))


def export(ds: Dataset, fmt: str, out: Path, name: str, progress: Callable[[int], None] | None = None) -> list[Path]:
    """Write the dataset's token stream as llm.c shards (one per shard) or one nanoGPT file."""
    _require_uint16(ds, fmt)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if fmt == "nanogpt":
        path = out / f"{name}.bin"
        with open(path, "wb") as f:
            for chunk in _chunks(ds):
                f.write(chunk.astype("<u2", copy=False).tobytes())
                if progress:
                    progress(len(chunk))
        return [path]
    big = next((e for e in ds.manifest.shards if e.num_tokens > LLMC_MAX_TOKENS), None)
    if big is not None:
        raise UsageError(f"{ds.path / big.file}: {big.num_tokens:,} tokens, but an llm.c header counts at most "
                         f"{LLMC_MAX_TOKENS:,}; preprocess with a smaller --shard-tokens")
    for i, entry in enumerate(ds.manifest.shards):
        path = out / f"{name}_{i:06d}.bin"
        start, stop = int(ds.starts[i]), int(ds.starts[i + 1])
        with open(path, "wb") as f:
            f.write(llmc_header(entry.num_tokens))
            for a in range(start, stop, _CHUNK):
                chunk = ds.read(a, min(a + _CHUNK, stop))
                f.write(chunk.astype("<u2", copy=False).tobytes())
                if progress:
                    progress(len(chunk))
        written.append(path)
    return written


def detect(path: Path) -> str:
    """'llmc' when the file starts with llm.c's magic, else 'nanogpt' (raw uint16)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return "llmc" if len(head) == 4 and int(np.frombuffer(head, "<i4")[0]) == LLMC_MAGIC else "nanogpt"


def _token_files(paths: list[Path], fmt: str) -> list[tuple[Path, int, int]]:
    """(path, data offset, token count) of each file, all checked before anything is written."""
    out = []
    for p in paths:
        if not p.is_file():
            raise ShardFormatError(f"{p}: no such file")
        kind = detect(p) if fmt == "auto" else fmt
        if kind == "llmc":
            out.append((p, LLMC_HEADER_BYTES, read_llmc_header(p)))
        else:
            size = p.stat().st_size
            if size % 2:
                raise ShardFormatError(f"{p}: {size} bytes is not a whole number of uint16 tokens")
            out.append((p, 0, size // 2))
    return out


def import_tokens(paths: list[Path], fmt: str, tokenizer_dir: Path, out: Path, *, shard_tokens: int,
                  eos_token: str | None, progress: Callable[[int], None] | None = None):
    """Build a dataset directory from token files and a tokenizer directory.

    These formats store no document boundaries: each EOS ends a document here, as nanoGPT's
    prepare.py writes them (EOS after each document). Data with EOS before each document
    (llm.c's fineweb.py) gets its boundaries shifted by one token; the token stream, and so the
    fingerprint, is the same either way. Tokens after the last EOS form the last document, and
    a stretch without EOS is cut every 16M tokens, so memory stays bounded.
    """
    from transformers import AutoTokenizer  # lazy: only import needs the tokenizer's vocabulary

    files = _token_files(paths, fmt)
    if not (tokenizer_dir / "tokenizer_config.json").exists() and not (tokenizer_dir / "tokenizer.json").exists():
        raise UsageError(f"--tokenizer {tokenizer_dir}: not a tokenizer directory (e.g. DIR/tokenizer of a dataset, "
                         "or `preprocess --tokenizer-only`)")
    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"--tokenizer {tokenizer_dir}: transformers cannot load it ({str(e).splitlines()[0]})") from None
    vocab = vocab_size(tok)
    eos = tok.eos_token_id if eos_token is None else tok.get_vocab().get(eos_token)
    if eos_token is not None and eos is None:
        raise UsageError(f"--eos-token {eos_token!r} is not a token of {tokenizer_dir}")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out}: not empty; choose a new directory")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tokenizer_dir, out / TOKENIZER_DIR)  # verbatim: same tokenizer hash as the source
    writer = DatasetWriter(out, vocab_size=vocab, shard_tokens=shard_tokens)
    carry = np.empty(0, dtype=np.int64)
    for path, offset, count in files:
        data = np.memmap(path, dtype="<u2", mode="r", offset=offset, shape=(count,)) if count else np.empty(0, "<u2")
        for a in range(0, count, _CHUNK):
            chunk = np.concatenate((carry, np.asarray(data[a:a + _CHUNK], dtype=np.int64)))
            ends = np.flatnonzero(chunk == eos) + 1 if eos is not None else np.empty(0, np.int64)
            if len(ends):
                writer.add(chunk[:ends[-1]], np.diff(np.concatenate(([0], ends))))
            carry = chunk[ends[-1]:] if len(ends) else chunk
            if len(carry) >= _CHUNK:  # no EOS for a long stretch: end a document here
                writer.add(carry, [len(carry)])
                carry = carry[:0]
            if progress:
                progress(min(_CHUNK, count - a))
        del data
    if len(carry):
        writer.add(carry, [len(carry)])
    settings = {"imported": fmt, "files": [p.name for p, _, _ in files]}
    inputs = [{"name": p.name, "bytes": p.stat().st_size, "tokens": n} for p, _, n in files]
    tokenizer = {"kind": "transformers", "source": str(tokenizer_dir), "eos_token": tok.eos_token, "bos_id": tok.bos_token_id}
    from shards import __version__

    return writer.finish(eos_id=eos, eos_separates_documents=eos is not None, tokenizer=tokenizer, settings=settings,
                         inputs=inputs, stats={}, source_bytes=0, tool_version=__version__)
