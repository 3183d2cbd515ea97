"""Names and byte layout of a dataset directory: the only module that knows them."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import numpy as np

from shards.errors import ShardFormatError

FORMAT_NAME = "shardtrain-tokens"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"
# The document index is one int64 per document: its first token's offset inside the shard.
INDEX_DTYPE = np.dtype("<i8")
# Every .npy this package writes has a 128-byte header, as numpy's own np.save writes for 1-D
# arrays; reserving it up front lets a shard stream to disk before its length is known.
NPY_HEADER_BYTES = 128
# Bounds on any .npy header a reader accepts (other writers pad differently): the 10-byte
# preamble at least, and at most what a version 1.0 header can hold. A hostile header length
# (version 2 allows 4 GiB) is refused before anything is read, not allocated.
MIN_NPY_HEADER_BYTES = 10
MAX_NPY_HEADER_BYTES = 10 + 0xFFFF
_NPY_MAGIC = b"\x93NUMPY\x01\x00"


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.npy"


def index_name(index: int) -> str:
    return f"shard_{index:05d}.docs.npy"


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65,536), else uint32; little-endian on disk."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size <= 1 << 16:
        return np.dtype("<u2")
    if vocab_size <= 1 << 32:
        return np.dtype("<u4")
    raise ValueError(f"vocab_size {vocab_size} does not fit uint32 token ids")


def dtype_from_name(name: str) -> np.dtype:
    if name not in ("uint16", "uint32"):
        raise ShardFormatError(f"unsupported token dtype {name!r} (expected uint16 or uint32)")
    return np.dtype(name).newbyteorder("<")


def npy_header(dtype: np.dtype, length: int) -> bytes:
    """The .npy v1.0 header of a 1-D array, padded to exactly NPY_HEADER_BYTES."""
    body = f"{{'descr': '{dtype.str}', 'fortran_order': False, 'shape': ({length},), }}"
    pad = NPY_HEADER_BYTES - len(_NPY_MAGIC) - 2 - len(body) - 1
    if pad < 0:
        raise ValueError(f"array length {length} does not fit a {NPY_HEADER_BYTES}-byte header")
    text = (body + " " * pad + "\n").encode("latin1")
    return _NPY_MAGIC + struct.pack("<H", len(text)) + text


def read_npy_header(path: Path) -> tuple[np.dtype, int, int]:
    """(dtype, length, data offset) of a 1-D .npy file; ShardFormatError if it is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(10)
            if len(head) < 10 or head[:6] != _NPY_MAGIC[:6]:
                raise ShardFormatError(f"{path}: not a .npy file (bad magic); re-run preprocess")
            major = head[6]
            if major == 1:
                (hlen,) = struct.unpack("<H", head[8:10])
                offset = 10 + hlen
            elif major in (2, 3):
                head += f.read(2)
                (hlen,) = struct.unpack("<I", head[8:12])
                offset = 12 + hlen
            else:
                raise ShardFormatError(f"{path}: unsupported .npy version {major}")
            if offset > MAX_NPY_HEADER_BYTES:
                raise ShardFormatError(f"{path}: .npy header of {offset:,} bytes is over the "
                                       f"{MAX_NPY_HEADER_BYTES:,} this format allows; refusing to read it")
            text = f.read(offset - len(head)).decode("latin1")
    except OSError as e:
        raise ShardFormatError(f"{path}: cannot read ({e.strerror})") from None
    try:
        meta = ast.literal_eval(text.strip())
        dtype = np.dtype(meta["descr"])
        shape = tuple(meta["shape"])
        fortran = bool(meta["fortran_order"])
    except (ValueError, SyntaxError, KeyError, TypeError, RecursionError, MemoryError):
        raise ShardFormatError(f"{path}: truncated or corrupt .npy header") from None
    if len(shape) != 1 or fortran:
        raise ShardFormatError(f"{path}: expected a 1-D array, header says shape {shape}")
    if type(shape[0]) is not int or shape[0] < 0:
        raise ShardFormatError(f"{path}: truncated or corrupt .npy header (length {shape[0]!r})")
    return dtype, shape[0], offset
