"""manifest.json: its schema, validation on read, and the atomic write that makes a dataset complete."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shards.errors import IncompleteDatasetError, ShardFormatError
from shards.layout import FORMAT_NAME, FORMAT_VERSION, MANIFEST, TOKENIZER_DIR, dtype_from_name


@dataclass(frozen=True, slots=True)
class ShardEntry:
    """One shard as the manifest records it."""

    file: str
    num_tokens: int
    num_documents: int
    bytes: int
    sha256: str
    index_file: str
    index_bytes: int
    index_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class Manifest:
    """The facts of a complete dataset; `raw` keeps every key for `shards info --json`."""

    raw: dict[str, Any]
    dtype: np.dtype
    vocab_size: int
    eos_id: int | None
    eos_separates_documents: bool
    shards: tuple[ShardEntry, ...]
    num_tokens: int
    num_documents: int
    fingerprint: str
    stream_sha256: str
    tokenizer_sha256: str

    @property
    def tokenizer_dir(self) -> str:
        """The tokenizer's directory, relative to the dataset directory."""
        return self.raw["tokenizer"].get("dir", TOKENIZER_DIR)


_REQUIRED = ("format", "format_version", "dtype", "vocab_size", "shards", "num_tokens",
             "num_documents", "fingerprint", "stream_sha256", "tokenizer")


def load_manifest(directory: Path) -> Manifest:
    """Read and check DIR/manifest.json; a missing one means the dataset is incomplete."""
    directory = Path(directory)
    if not directory.exists():
        raise ShardFormatError(f"{directory}: no such dataset directory")
    if not directory.is_dir():
        raise ShardFormatError(f"{directory}: not a directory (a dataset is a directory with manifest.json)")
    path = directory / MANIFEST
    if not path.exists():
        raise IncompleteDatasetError(
            f"{directory}: incomplete dataset: no {MANIFEST}; was preprocess interrupted? re-run it")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ShardFormatError(f"{path}: not valid JSON (line {e.lineno}: {e.msg}); re-run preprocess") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ShardFormatError(f"{path}: cannot read ({e})") from None
    return parse_manifest(raw, path)


def parse_manifest(raw: Any, where: Path | str) -> Manifest:
    if not isinstance(raw, dict):
        raise ShardFormatError(f"{where}: expected a JSON object")
    if raw.get("format") != FORMAT_NAME:
        raise ShardFormatError(f"{where}: not a {FORMAT_NAME} manifest (format={raw.get('format')!r})")
    version = raw.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ShardFormatError(f"{where}: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ShardFormatError(
            f"{where}: format_version {version} is newer than this tool reads ({FORMAT_VERSION}); "
            "upgrade shardtrain")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ShardFormatError(f"{where}: missing keys {', '.join(missing)}")
    try:
        shards = tuple(ShardEntry(**{k: s[k] for k in ShardEntry.__slots__}) for s in raw["shards"])
        eos = raw.get("eos_id")
        m = Manifest(
            raw=raw, dtype=dtype_from_name(raw["dtype"]), vocab_size=int(raw["vocab_size"]),
            eos_id=None if eos is None else int(eos),
            eos_separates_documents=bool(raw.get("eos_separates_documents", False)),
            shards=shards, num_tokens=int(raw["num_tokens"]), num_documents=int(raw["num_documents"]),
            fingerprint=str(raw["fingerprint"]), stream_sha256=str(raw["stream_sha256"]),
            tokenizer_sha256=str(raw["tokenizer"]["sha256"]))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ShardFormatError):
            raise
        raise ShardFormatError(f"{where}: malformed entry ({type(e).__name__}: {e})") from None
    if sum(s.num_tokens for s in shards) != m.num_tokens:
        raise ShardFormatError(f"{where}: shard token counts do not add up to num_tokens={m.num_tokens}")
    if sum(s.num_documents for s in shards) != m.num_documents:
        raise ShardFormatError(f"{where}: shard document counts do not add up to num_documents")
    return m


def tokenizer_mismatch(manifests: list[tuple[Path, Manifest]]) -> tuple[Path, Path] | None:
    """The first (other, first) pair of datasets tokenized differently, or None when all agree."""
    first_path, first = manifests[0]
    for path, m in manifests[1:]:
        if m.tokenizer_sha256 != first.tokenizer_sha256:
            return path, first_path
    return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same directory, fsync it, then os.replace it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a manifest is for everyone to read
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Remove the partial temp file, then let the error go on (OLMo-core's version swallowed it).
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
