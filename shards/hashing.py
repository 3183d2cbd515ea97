"""Content hashes: file sha256, the tokenizer's identity and the dataset fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

_CHUNK = 8 << 20  # bytes read per step when hashing a file


def sha256_file(path: Path, offset: int = 0) -> str:
    """Hex sha256 of a file's bytes from `offset` on, read in bounded chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_shard(path: Path, data_offset: int, stream: "hashlib._Hash",
               each: Callable[[bytes], None] | None = None) -> str:
    """Hex sha256 of the whole file, in one pass of bounded chunks. The bytes from `data_offset`
    on (a shard's ids, after its .npy header) also go, in order, into the running `stream` hash
    and, chunk by chunk, to `each` (which may look at the ids: each chunk but a file's last is
    _CHUNK bytes, a multiple of any id size)."""
    whole = hashlib.sha256()
    with open(path, "rb") as f:
        whole.update(f.read(data_offset))
        while chunk := f.read(_CHUNK):
            whole.update(chunk)
            stream.update(chunk)
            if each is not None:
                each(chunk)
    return whole.hexdigest()


def update_from_file(h: "hashlib._Hash", path: Path, offset: int, length: int) -> None:
    """Feed `length` bytes of `path` starting at `offset` into the running hash `h`."""
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left > 0:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                raise EOFError(f"{path}: expected {length} bytes from offset {offset}")
            h.update(chunk)
            left -= len(chunk)


def tokenizer_sha256(directory: Path) -> str:
    """sha256 over the tokenizer directory: every file's relative name and content hash, sorted."""
    h = hashlib.sha256()
    files = sorted(p for p in Path(directory).rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{directory}: no tokenizer files")
    for p in files:
        rel = p.relative_to(directory).as_posix()
        h.update(f"{rel}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def fingerprint(dtype_name: str, tokenizer_hash: str, stream_hash: str) -> str:
    """Names a token stream and its tokenizer, whatever shards and workers produced it.

    The stream hash is sha256 over the little-endian token bytes of all shards in order, so
    re-cutting the stream into other shards (or merging parts) keeps the fingerprint.
    """
    text = f"shardtrain-fingerprint-v1\ndtype={dtype_name}\ntokenizer={tokenizer_hash}\nstream={stream_hash}\n"
    return hashlib.sha256(text.encode()).hexdigest()
