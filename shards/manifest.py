"""manifest.json: its schema, validation on read, and the atomic write that makes a dataset complete."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shards import numbers
from shards.confine import ConfinementError, check_file, check_tree, name_problem
from shards.errors import IncompleteDatasetError, ShardFormatError, UsageError
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
# How far load_manifest looks for datasets inside a directory that is not one (the common slip:
# passing the parent of the train/ and valid/ that `preprocess --valid-fraction` writes).
_LOOK_INSIDE = 1000


def load_manifest(directory: Path) -> Manifest:
    """Read and check DIR/manifest.json; a missing one means the dataset is incomplete.

    Every reader passes here, so this is where a dataset from elsewhere is held to the contract:
    numbers of sane types and ranges, names that stay inside DIR (see shards.confine), and no
    symlink leaving it. Nothing outside DIR is read, and no shard byte either.
    """
    directory = Path(directory)
    if not directory.exists():
        raise ShardFormatError(f"{directory}: no such dataset directory")
    if not directory.is_dir():
        raise ShardFormatError(f"{directory}: not a directory (a dataset is a directory with manifest.json)")
    path = directory / MANIFEST
    if not os.path.lexists(path):
        raise _no_manifest(directory)
    check_file(directory, MANIFEST, "the manifest")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ShardFormatError(f"{path}: not valid JSON (line {e.lineno}: {e.msg}); re-run preprocess") from None
    except (ValueError, RecursionError) as e:  # integers past Python's digit limit, absurd nesting
        raise ShardFormatError(f"{path}: not a valid manifest ({type(e).__name__}: {str(e)[:80]})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ShardFormatError(f"{path}: cannot read ({e})") from None
    m = parse_manifest(raw, path)
    for i, entry in enumerate(m.shards):
        check_file(directory, entry.file, f"shards[{i}].file")
        check_file(directory, entry.index_file, f"shards[{i}].index_file")
    check_tree(directory / m.tokenizer_dir, "the tokenizer directory", top_within=directory)
    return m


def _no_manifest(directory: Path) -> ValueError:
    """What a directory without manifest.json is: a parent of datasets, or an incomplete one."""
    inner, partial = [], []
    try:
        with os.scandir(directory) as entries:
            subs = sorted(Path(e.path) for _, e in zip(range(_LOOK_INSIDE), entries)
                          if not e.name.startswith(".") and e.is_dir())
    except OSError:
        subs = []
    for sub in subs:
        if (sub / MANIFEST).is_file():
            inner.append(sub)
        elif any(sub.glob("shard_*.npy*")):
            partial.append(sub)
    if inner:
        names = [str(p) for p in inner]
        if len(names) == 1:
            return UsageError(f"{directory}: holds no dataset itself but the dataset {names[0]}; pass it")
        shown = names if len(names) <= 4 else names[:3] + [f"{len(names) - 3} more"]
        listed = ", ".join(shown[:-1]) + " and " + shown[-1]
        return UsageError(f"{directory}: holds no dataset itself but datasets {listed}; pass one of them")
    if partial:
        names = " and ".join(str(p) for p in partial[:2]) + ("" if len(partial) <= 2 else f" (+{len(partial) - 2})")
        return IncompleteDatasetError(
            f"{directory}: holds no dataset itself, only the incomplete dataset(s) {names} (no {MANIFEST}); "
            "was preprocess interrupted? re-run it")
    return IncompleteDatasetError(
        f"{directory}: incomplete dataset: no {MANIFEST}; was preprocess interrupted? re-run it")


def parse_manifest(raw: Any, where: Path | str) -> Manifest:
    """Check a manifest's JSON without touching the filesystem: types, ranges, sums and names."""
    if not isinstance(raw, dict):
        raise ShardFormatError(f"{where}: expected a JSON object")
    if raw.get("format") != FORMAT_NAME:
        raise ShardFormatError(f"{where}: not a {FORMAT_NAME} manifest (format={raw.get('format')!r:.40})")
    version = raw.get("format_version")
    if not numbers.is_int(version) or version < 1:
        raise ShardFormatError(f"{where}: bad format_version {version!r:.40}")
    if version > FORMAT_VERSION:
        raise ShardFormatError(
            f"{where}: format_version {version} is newer than this tool reads ({FORMAT_VERSION}); "
            "upgrade shardtrain")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ShardFormatError(f"{where}: missing keys {', '.join(missing)}")
    try:
        dtype = dtype_from_name(raw["dtype"])
    except ShardFormatError as e:
        raise ShardFormatError(f"{where}: {e}") from None
    vocab, eos, separates = numbers.check_vocab(raw, where, dtype)
    if not isinstance(raw["shards"], list):
        raise ShardFormatError(f"{where}: shards must be a JSON array")
    shards = tuple(ShardEntry(**numbers.check_shard(s, i, where, dtype)) for i, s in enumerate(raw["shards"]))
    tok = raw["tokenizer"]
    if not isinstance(tok, dict):
        raise ShardFormatError(f"{where}: tokenizer must be a JSON object")
    numbers.check_optional(raw, where)
    m = Manifest(
        raw=raw, dtype=dtype, vocab_size=vocab, eos_id=eos, eos_separates_documents=separates, shards=shards,
        num_tokens=numbers.integer(raw["num_tokens"], "num_tokens", where),
        num_documents=numbers.integer(raw["num_documents"], "num_documents", where),
        fingerprint=numbers.sha256_hex(raw["fingerprint"], "fingerprint", where),
        stream_sha256=numbers.sha256_hex(raw["stream_sha256"], "stream_sha256", where),
        tokenizer_sha256=numbers.sha256_hex(tok.get("sha256"), "tokenizer.sha256", where))
    if sum(s.num_tokens for s in shards) != m.num_tokens:
        raise ShardFormatError(f"{where}: shard token counts do not add up to num_tokens={m.num_tokens}")
    if sum(s.num_documents for s in shards) != m.num_documents:
        raise ShardFormatError(f"{where}: shard document counts do not add up to num_documents")
    _check_names(m, where)
    return m


def _check_names(m: Manifest, where: Path | str) -> None:
    """Every name a plain one, and no two alike (nor the manifest's own): see shards.confine."""
    named = [("tokenizer.dir", m.raw["tokenizer"].get("dir", TOKENIZER_DIR))]
    for i, s in enumerate(m.shards):
        named += [(f"shards[{i}].file", s.file), (f"shards[{i}].index_file", s.index_file)]
    seen = {MANIFEST: "the manifest itself"}
    for key, name in named:
        if problem := name_problem(name):
            raise ConfinementError(f"{where}: {key} {name!r:.60} {problem}; refusing to read it "
                                   "(a manifest names only files inside its dataset directory)")
        if name in seen:
            raise ConfinementError(f"{where}: {key} {name!r} is also {seen[name]}; each entry needs a file of its own")
        seen[name] = key


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
    except BaseException as e:
        # Remove the partial temp file, then let the error go on (OLMo-core's version swallowed it).
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # a full disk then names the file being written
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
