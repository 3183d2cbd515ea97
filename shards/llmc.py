"""The byte layouts of other tools' token files: llm.c's two `.bin` variants and nanoGPT's raw uint16.

llm.c (karpathy/llm.c `dev/data/data_common.py`, `write_datafile` and `HEADERS_INFO`): a header
of 256 little-endian int32 -- magic, version, token count, the rest zero -- then that many
tokens. Two variants exist:

    "gpt-2"   magic 20240520, version 1, uint16 tokens (read by `llmc/dataloader.h`, train_gpt2.py)
    "llama-3" magic 20240801, version 7, uint32 tokens (read by train_llama3.py)

modded-nanogpt reads the gpt-2 variant. nanoGPT (`data/*/prepare.py`): nothing but uint16 tokens
(`train.bin`, `val.bin`), no header. Only this module knows these layouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shards.errors import ShardFormatError

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_TOKENS = 2**31 - 1  # the header counts tokens in an int32 (write_datafile asserts < 2**31)


@dataclass(frozen=True, slots=True)
class Variant:
    """One llm.c header variant, named as llm.c's data_common.py names it."""

    name: str
    magic: int
    version: int
    dtype: np.dtype


GPT2 = Variant("gpt-2", 20240520, 1, np.dtype("<u2"))
LLAMA3 = Variant("llama-3", 20240801, 7, np.dtype("<u4"))
VARIANTS = {v.magic: v for v in (GPT2, LLAMA3)}
RAW_DTYPE = np.dtype("<u2")  # nanoGPT's prepare.py writes np.uint16
KNOWN = "20240520 (GPT-2, uint16 tokens) or 20240801 (Llama-3, uint32 tokens)"


def variant_for(dtype: np.dtype) -> Variant:
    """The llm.c variant that holds ids of this dtype without truncating them."""
    return GPT2 if np.dtype(dtype).itemsize <= 2 else LLAMA3


def header(variant: Variant, num_tokens: int) -> bytes:
    """The 1,024-byte llm.c header of a file of `num_tokens` tokens."""
    if not 0 <= num_tokens <= MAX_TOKENS:
        raise ValueError(f"an llm.c header counts 0 to {MAX_TOKENS:,} tokens, not {num_tokens:,}")
    h = np.zeros(HEADER_INTS, dtype="<i4")
    h[:3] = (variant.magic, variant.version, num_tokens)
    return h.tobytes()


def file_bytes(variant: Variant | None, num_tokens: int) -> int:
    """Size of a file of `num_tokens` tokens: llm.c's (with header) or, for None, nanoGPT's raw uint16."""
    if variant is None:
        return num_tokens * RAW_DTYPE.itemsize
    return HEADER_BYTES + num_tokens * variant.dtype.itemsize


@dataclass(frozen=True, slots=True)
class TokenFile:
    """A checked token file: where its tokens start, how many, of which dtype."""

    path: Path
    variant: Variant | None  # None: raw uint16 (nanoGPT)
    offset: int
    count: int

    @property
    def dtype(self) -> np.dtype:
        return RAW_DTYPE if self.variant is None else self.variant.dtype

    @property
    def kind(self) -> str:
        return "nanogpt" if self.variant is None else f"llmc-{self.variant.name}"


def _head(path: Path) -> tuple[bytes, int]:
    with open(path, "rb") as f:
        return f.read(HEADER_BYTES), path.stat().st_size


def _ints(head: bytes) -> list[int]:
    n = len(head) // 4
    return [int(x) for x in np.frombuffer(head[:n * 4], dtype="<i4")[:3]]


def starts_like_llmc(head: bytes) -> bool:
    """A header-shaped start with a date-like magic, as llm.c's are (20240520, 20240522, 20240801).

    Raw uint16 tokens do not look like that by chance: the first int32 would have to fall in
    that narrow range and the second be a small version number.
    """
    if len(head) < HEADER_BYTES:
        return False
    magic, version, count = _ints(head)
    return 20200101 <= magic <= 20991231 and 0 < version < 256 and count >= 0


def open_token_file(path: Path, fmt: str) -> TokenFile:
    """Check a token file's layout (fmt: "auto", "llmc" or "nanogpt") and say where its tokens are.

    Under "auto" a file is llm.c's when it starts with one of the two magics and raw uint16
    otherwise; a file that starts like an llm.c header with another magic is refused rather
    than read as tokens.
    """
    if not path.is_file():
        raise ShardFormatError(f"{path}: no such file")
    head, size = _head(path)
    magic = _ints(head)[0] if len(head) >= 4 else None
    if fmt == "llmc" or (fmt == "auto" and (magic in VARIANTS or starts_like_llmc(head))):
        return _llmc(path, head, size)
    if size % RAW_DTYPE.itemsize:
        raise ShardFormatError(f"{path}: {size:,} bytes is not a whole number of uint16 tokens; "
                               "not a nanoGPT token file")
    return TokenFile(path, None, 0, size // RAW_DTYPE.itemsize)


def _llmc(path: Path, head: bytes, size: int) -> TokenFile:
    if len(head) < HEADER_BYTES:
        raise ShardFormatError(f"{path}: {size:,} bytes, shorter than an llm.c header ({HEADER_BYTES:,} bytes)")
    magic, version, count = _ints(head)
    variant = VARIANTS.get(magic)
    if variant is None:
        raise ShardFormatError(f"{path}: bad magic {magic} (version {version}); an llm.c token file starts with "
                               f"{KNOWN}; pass --format nanogpt if it holds raw uint16 tokens")
    if version != variant.version:
        raise ShardFormatError(f"{path}: llm.c {variant.name} file (magic {magic}) with version {version}; "
                               f"that magic comes with version {variant.version} ({variant.dtype.itemsize * 8}-bit "
                               "tokens), the only one llm.c writes")
    want = file_bytes(variant, count) if count >= 0 else -1
    if count < 0 or size != want:
        raise ShardFormatError(f"{path}: header says {count:,} {variant.name} tokens ({want:,} bytes with the header) "
                               f"but the file has {size:,} bytes (truncated, or another header?)")
    return TokenFile(path, variant, HEADER_BYTES, count)


def tokens(f: TokenFile) -> np.ndarray:
    """The file's tokens as a read-only memory map (an empty array for an empty file)."""
    if f.count == 0:
        return np.empty(0, dtype=f.dtype)
    return np.memmap(f.path, dtype=f.dtype, mode="r", offset=f.offset, shape=(f.count,))


def known_magic(path: Path) -> int | None:
    """The llm.c magic a file starts with, when it is one of the two known ones."""
    head, _ = _head(path)
    magic = _ints(head)[0] if len(head) >= 4 else None
    return magic if magic in VARIANTS else None
