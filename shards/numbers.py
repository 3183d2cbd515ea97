"""Sane numbers: every count, size, id and hash in a manifest, checked for type and range.

JSON gives readers floats, NaN, strings and booleans where counts belong (`true` is an int to
Python), and sizes no file could have. Each check names the key and says what was expected, in
one line. Checks that need the files (their real sizes) are the readers'; these need only the
manifest.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from shards.errors import ShardFormatError
from shards.layout import INDEX_DTYPE, MAX_NPY_HEADER_BYTES, MIN_NPY_HEADER_BYTES, dtype_for_vocab

INT64_MAX = (1 << 63) - 1  # counts and offsets become int64 arrays in the readers
MAX_VOCAB = 1 << 32  # the widest dtype, uint32, holds ids below 2^32
_HEX64 = re.compile(r"[0-9a-f]{64}")


def is_int(value: Any) -> bool:
    """A JSON integer: Python's bool is an int, JSON's `true` is not a count."""
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def integer(value: Any, key: str, where: object, lo: int = 0, hi: int = INT64_MAX) -> int:
    """`value` as an int in [lo, hi], or ShardFormatError naming `key`."""
    if is_int(value) and lo <= value <= hi:
        return value
    if hi == INT64_MAX:
        want = "a non-negative integer" if lo == 0 else f"an integer >= {lo:,}"
    else:
        want = f"an integer in [{lo:,}, {hi:,}]"
    raise ShardFormatError(f"{where}: {key} must be {want}, got {_shown(value)}")


def sha256_hex(value: Any, key: str, where: object) -> str:
    if isinstance(value, str) and _HEX64.fullmatch(value):
        return value
    raise ShardFormatError(f"{where}: {key} must be a sha256 (64 lowercase hex digits), got {_shown(value)}")


def check_vocab(raw: dict[str, Any], where: object, dtype: np.dtype) -> tuple[int, int | None, bool]:
    """(vocab_size, eos_id, eos_separates_documents), each checked against the others and the dtype."""
    vocab = integer(raw["vocab_size"], "vocab_size", where, 1, MAX_VOCAB)
    if dtype_for_vocab(vocab) != dtype:
        raise ShardFormatError(f"{where}: dtype {dtype.name} does not match vocab_size {vocab:,} "
                               f"(the format stores {dtype_for_vocab(vocab).name} for it)")
    eos = raw.get("eos_id")
    if eos is not None:
        eos = integer(eos, "eos_id", where, 0, vocab - 1)
    separates = raw.get("eos_separates_documents", False)
    if not isinstance(separates, bool):
        raise ShardFormatError(f"{where}: eos_separates_documents must be true or false, got {_shown(separates)}")
    if separates and eos is None:
        raise ShardFormatError(f"{where}: eos_separates_documents is true but eos_id is null")
    return vocab, eos, separates


def check_shard(s: Any, i: int, where: object, dtype: np.dtype) -> dict[str, Any]:
    """One shard entry: counts that agree with each other and sizes a .npy of them could have."""
    key = f"shards[{i}]"
    if not isinstance(s, dict):
        raise ShardFormatError(f"{where}: {key} must be a JSON object, got {_shown(s)}")
    fields = ("file", "num_tokens", "num_documents", "bytes", "sha256", "index_file", "index_bytes", "index_sha256")
    missing = [f for f in fields if f not in s]
    if missing:
        raise ShardFormatError(f"{where}: {key} lacks {', '.join(missing)}")
    tokens = integer(s["num_tokens"], f"{key}.num_tokens", where)
    docs = integer(s["num_documents"], f"{key}.num_documents", where)
    if docs > tokens or (tokens > 0) != (docs > 0):
        raise ShardFormatError(f"{where}: {key} has {docs:,} documents in {tokens:,} tokens "
                               "(every document holds at least one token)")
    _size(s["bytes"], f"{key}.bytes", tokens, dtype.itemsize, dtype.name, where)
    _size(s["index_bytes"], f"{key}.index_bytes", docs, INDEX_DTYPE.itemsize, "int64", where)
    sha256_hex(s["sha256"], f"{key}.sha256", where)
    sha256_hex(s["index_sha256"], f"{key}.index_sha256", where)
    return {f: s[f] for f in fields}


def _size(value: Any, key: str, count: int, itemsize: int, dtype_name: str, where: object) -> None:
    size = integer(value, key, where)
    data = count * itemsize
    if not data + MIN_NPY_HEADER_BYTES <= size <= data + MAX_NPY_HEADER_BYTES:
        raise ShardFormatError(
            f"{where}: {key} {size:,} does not fit {count:,} x {dtype_name} (a .npy of them takes {data:,} bytes "
            f"plus a {MIN_NPY_HEADER_BYTES} to {MAX_NPY_HEADER_BYTES:,}-byte header)")


def check_optional(raw: dict[str, Any], where: object) -> None:
    """Keys the commands read beyond the required ones: the types they rely on."""
    for key, kind in (("settings", dict), ("stats", dict), ("tool", dict), ("inputs", list)):
        if raw.get(key) is not None and not isinstance(raw[key], kind):
            raise ShardFormatError(f"{where}: {key} must be a JSON {'object' if kind is dict else 'array'}")
    if "source_bytes" in raw:
        integer(raw["source_bytes"], "source_bytes", where)
    for i, entry in enumerate(raw.get("inputs") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ShardFormatError(f"{where}: inputs[{i}] must be an object with a string name")
    settings = raw.get("settings") or {}
    if settings.get("max_doc_bytes") is not None:
        integer(settings["max_doc_bytes"], "settings.max_doc_bytes", where, 1)
    part = settings.get("part")
    if part is not None:
        m = re.fullmatch(r"([0-9]+)/([0-9]+)", part) if isinstance(part, str) else None
        if m is None or int(m[1]) >= int(m[2]):
            raise ShardFormatError(f"{where}: settings.part must be \"K/N\" with 0 <= K < N, got {_shown(part)}")
