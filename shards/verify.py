"""Full verification of a dataset directory: every byte re-hashed, every id and index checked."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shards.errors import ShardFormatError
from shards.hashing import fingerprint, hash_shard, sha256_file, tokenizer_sha256
from shards.layout import INDEX_DTYPE, read_npy_header
from shards.manifest import Manifest, load_manifest
from shards.tokenizer_guard import check_inert

_CHUNK_TOKENS = 16 << 20  # document starts checked per step: bounded memory on any index size


@dataclass(frozen=True, slots=True)
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def verify(path: Path, progress: Callable[[int], None] | None = None, *,
           manifest: Manifest | None = None) -> list[Problem]:
    """Every problem found (empty when the dataset is intact). A missing or unreadable manifest
    raises ShardFormatError instead, since nothing else can be checked without it.

    `manifest`: what load_manifest(path) returned, when the caller has it already.
    """
    path = Path(path)
    m = manifest if manifest is not None else load_manifest(path)
    problems: list[Problem] = []
    stream = hashlib.sha256()
    stream_ok = True
    for entry in m.shards:
        p = path / entry.file
        shard_problems = _check_tokens(p, entry, m.dtype, m.vocab_size, stream, progress)
        if shard_problems:
            stream_ok = False
        problems += shard_problems
        problems += _check_index(path / entry.index_file, entry)
    tok_dir = path / m.tokenizer_dir
    try:
        tok_hash = tokenizer_sha256(tok_dir)
    except FileNotFoundError:
        problems.append(Problem(str(tok_dir), "tokenizer directory missing or empty"))
        tok_hash = None
    if tok_hash is not None and tok_hash != m.tokenizer_sha256:
        problems.append(Problem(str(tok_dir), "tokenizer files differ from the manifest's sha256"))
    if tok_hash is not None:
        problems += _check_inert(tok_dir)
    if stream_ok:
        if stream.hexdigest() != m.stream_sha256:
            problems.append(Problem(str(path), "token stream hash differs from the manifest"))
        # Against the manifest's own tokenizer hash: a changed tokenizer is reported once, above.
        elif fingerprint(m.dtype.name, m.tokenizer_sha256, m.stream_sha256) != m.fingerprint:
            problems.append(Problem(str(path), "fingerprint does not match the stream and tokenizer"))
    return problems


def _check_inert(tok_dir: Path) -> list[Problem]:
    """The tokenizer must load without running code (inspect, train and the round trip refuse it
    otherwise); matching hashes only prove its files are the ones shipped."""
    try:
        check_inert(tok_dir, str(tok_dir))
    except ShardFormatError as e:  # UnsafeTokenizerError, or a config that is not JSON
        return [Problem(str(tok_dir), str(e).removeprefix(f"{tok_dir}: "))]
    return []


def _check_tokens(p: Path, entry, dtype: np.dtype, vocab_size: int, stream, progress) -> list[Problem]:
    if not p.exists():
        return [Problem(str(p), "missing")]
    size = p.stat().st_size
    if size != entry.bytes:
        return [Problem(str(p), f"size {size} bytes, manifest says {entry.bytes} (truncated or resized)")]
    try:
        file_dtype, length, offset = read_npy_header(p)
    except ShardFormatError as e:
        return [Problem(str(p), str(e).split(": ", 1)[-1])]
    if file_dtype != dtype or length != entry.num_tokens:
        return [Problem(str(p), f"header says {length} x {file_dtype}, manifest says {entry.num_tokens} x {dtype}")]
    if offset + length * dtype.itemsize != size:
        return [Problem(str(p), f"a {offset}-byte header and {length} ids do not make its {size} bytes")]
    bad_ids: list[Problem] = []  # the first id outside the vocabulary
    done = 0  # ids checked so far

    def check(chunk: bytes) -> None:  # a bounded chunk of the ids, in order (shards.hashing.hash_shard)
        nonlocal done
        ids = np.frombuffer(chunk, dtype=file_dtype, count=len(chunk) // file_dtype.itemsize)
        if not bad_ids and len(ids) and int(ids.max()) >= vocab_size:
            k = int(np.argmax(ids >= vocab_size))
            bad_ids.append(Problem(str(p), f"token id {int(ids[k])} at position {done + k} >= vocab_size {vocab_size}"))
        done += len(ids)
        if progress:
            progress(len(ids))

    problems = []
    if hash_shard(p, offset, stream, check) != entry.sha256:  # one read of the file for all three checks
        problems.append(Problem(str(p), "sha256 mismatch (corrupted bytes)"))
    return problems + bad_ids


def _check_index(p: Path, entry) -> list[Problem]:
    if not p.exists():
        return [Problem(str(p), "document index missing")]
    if p.stat().st_size != entry.index_bytes:
        return [Problem(str(p), f"size {p.stat().st_size} bytes, manifest says {entry.index_bytes}")]
    if sha256_file(p) != entry.index_sha256:
        return [Problem(str(p), "sha256 mismatch (corrupted document index)")]
    try:
        starts = np.load(p, mmap_mode="r")
    except ValueError as e:
        return [Problem(str(p), f"unreadable document index ({e})")]
    if starts.dtype != INDEX_DTYPE or starts.shape != (entry.num_documents,):
        return [Problem(str(p), f"document index has {starts.shape} x {starts.dtype}, expected ({entry.num_documents},) int64")]
    bad = _first_bad_start(starts, entry.num_tokens)
    if bad is not None:
        return [Problem(str(p), f"document starts are not 0, strictly increasing and inside the shard "
                                f"(first bad: document {bad} of the shard)")]
    return []


def _first_bad_start(starts: np.ndarray, num_tokens: int) -> int | None:
    """The first document whose start breaks 0 = s[0] < s[1] < ... < num_tokens, in bounded chunks."""
    prev = -1
    for lo in range(0, len(starts), _CHUNK_TOKENS):
        chunk = np.asarray(starts[lo:lo + _CHUNK_TOKENS])
        if lo == 0 and chunk[0] != 0:
            return 0
        steps = np.diff(chunk, prepend=prev)
        wrong = (steps <= 0) | (chunk >= num_tokens)
        if wrong.any():
            return lo + int(np.argmax(wrong))
        prev = int(chunk[-1])
    return None
