"""DatasetWriter: streams documents into shards atomically and writes the manifest last."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shards.errors import ShardFormatError
from shards.hashing import fingerprint, sha256_file, tokenizer_sha256, update_from_file
from shards.layout import (FORMAT_NAME, FORMAT_VERSION, INDEX_DTYPE, MANIFEST, NPY_HEADER_BYTES,
                           TOKENIZER_DIR, dtype_for_vocab, index_name, npy_header, shard_name)
from shards.manifest import Manifest, ShardEntry, fsync_dir, parse_manifest, write_json_atomic
from shards.space import no_space

TMP_SUFFIX = ".tmp"


class _OpenShard:
    """The shard being written: two temp files (tokens, document starts) with reserved headers.

    A full disk met here is one NoSpaceError naming the temp file: the shard keeps its `.tmp`
    name, so nothing half-written looks complete, and a resumed writer truncates it back.
    """

    def __init__(self, directory: Path, index: int, dtype: np.dtype, tokens: int = 0, docs: int = 0):
        self.index, self.dtype, self.tokens, self.docs = index, dtype, tokens, docs
        self.path = directory / (shard_name(index) + TMP_SUFFIX)
        self.index_path = directory / (index_name(index) + TMP_SUFFIX)
        with no_space(self.path):
            self._open(tokens, docs)

    def _open(self, tokens: int, docs: int) -> None:
        mode = "r+b" if tokens or docs or self.path.exists() else "w+b"
        self.f = open(self.path, mode)
        self.fi = open(self.index_path, mode if self.index_path.exists() else "w+b")
        for f, n, itemsize in ((self.f, tokens, self.dtype.itemsize), (self.fi, docs, INDEX_DTYPE.itemsize)):
            end = NPY_HEADER_BYTES + n * itemsize
            f.truncate(end)  # drop whatever an interrupted run wrote after its last checkpoint
            if n == 0:
                f.seek(0)
                f.write(b"\0" * NPY_HEADER_BYTES)
            f.seek(end)

    def write(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        starts = self.tokens + np.concatenate(([0], np.cumsum(lengths[:-1], dtype=np.int64)))
        with no_space(self.path):
            self.f.write(tokens.data)
            self.fi.write(starts.astype(INDEX_DTYPE).data)
        self.tokens += len(tokens)
        self.docs += len(lengths)

    def sync(self) -> None:
        # Delayed allocation (ext4, XFS) may report a full disk only here, at flush or fsync.
        with no_space(self.path):
            for f in (self.f, self.fi):
                f.flush()
                os.fsync(f.fileno())

    def commit(self, directory: Path) -> ShardEntry:
        """Write the real headers, fsync, and rename both files into place."""
        with no_space(self.path):
            for f, dtype, n in ((self.f, self.dtype, self.tokens), (self.fi, INDEX_DTYPE, self.docs)):
                f.seek(0)
                f.write(npy_header(dtype, n))
        self.sync()
        self.f.close()
        self.fi.close()
        final, final_index = directory / shard_name(self.index), directory / index_name(self.index)
        entry = ShardEntry(
            file=final.name, num_tokens=self.tokens, num_documents=self.docs,
            bytes=self.path.stat().st_size, sha256=sha256_file(self.path),
            index_file=final_index.name, index_bytes=self.index_path.stat().st_size,
            index_sha256=sha256_file(self.index_path))
        os.replace(self.index_path, final_index)
        os.replace(self.path, final)  # the token file last: it is what readers look for
        fsync_dir(directory)
        return entry

    def close(self) -> None:
        self.f.close()
        self.fi.close()


class DatasetWriter:
    """Writes documents, in order, into shards of about `shard_tokens` tokens each.

    A shard ends at the first document boundary at or past `shard_tokens`, so every document
    lies in one shard. Each shard is written under a `.tmp` name and renamed when complete;
    `finish` writes manifest.json last. `checkpoint()` returns a JSON-able state from which a
    new writer continues after a crash (`state=`), producing the same bytes as an
    uninterrupted run.
    """

    def __init__(self, directory: Path, *, vocab_size: int, shard_tokens: int,
                 state: dict[str, Any] | None = None):
        if shard_tokens < 1:
            raise ValueError(f"shard_tokens must be positive, got {shard_tokens}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.vocab_size = vocab_size
        self.dtype = dtype_for_vocab(vocab_size)
        self.shard_tokens = shard_tokens
        self.shards: list[ShardEntry] = []
        self._stream = hashlib.sha256()  # over all token bytes in order: feeds the fingerprint
        self._open: _OpenShard | None = None
        if state is not None:
            self._restore(state)

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.shards) + (self._open.tokens if self._open else 0)

    @property
    def num_documents(self) -> int:
        return sum(s.num_documents for s in self.shards) + (self._open.docs if self._open else 0)

    def add(self, tokens: npt.ArrayLike, lengths: npt.ArrayLike) -> None:
        """Append documents: `tokens` is their ids concatenated, `lengths` their sizes (each >= 1)."""
        tokens = np.asarray(tokens)
        lengths = np.asarray(lengths, dtype=np.int64)
        if tokens.ndim != 1 or lengths.ndim != 1:
            raise ValueError("tokens and lengths must be 1-D")
        if int(lengths.sum()) != len(tokens):
            raise ValueError(f"lengths add up to {int(lengths.sum())} but {len(tokens)} tokens were given")
        if len(lengths) and int(lengths.min()) < 1:
            raise ValueError("every document needs at least one token")
        tokens = self._checked(tokens)
        pos, start = 0, 0  # documents and tokens of this call already written
        while pos < len(lengths):
            if self._open is None:
                self._open = _OpenShard(self.directory, len(self.shards), self.dtype)
            room = self.shard_tokens - self._open.tokens
            cum = np.cumsum(lengths[pos:])
            # Take documents up to and including the first one that fills the shard.
            n = min(int(np.searchsorted(cum, room)) + 1, len(cum))
            stop = start + int(cum[n - 1])
            piece = tokens[start:stop]
            self._open.write(piece, lengths[pos:pos + n])
            self._stream.update(piece.data)
            pos, start = pos + n, stop
            if self._open.tokens >= self.shard_tokens:
                self.shards.append(self._open.commit(self.directory))
                self._open = None

    def _checked(self, tokens: np.ndarray) -> np.ndarray:
        if tokens.size == 0:
            return tokens.astype(self.dtype)
        if tokens.dtype.kind not in "iu":
            raise ValueError(f"token ids must be integers, got dtype {tokens.dtype}")
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.vocab_size:
            bad = lo if lo < 0 else hi
            raise ShardFormatError(
                f"token id {bad} is outside the vocabulary [0, {self.vocab_size}); refusing to write it "
                f"(ids are never truncated to {self.dtype.name})")
        return np.ascontiguousarray(tokens, dtype=self.dtype)

    def checkpoint(self) -> dict[str, Any]:
        """Flush to disk and return the state a resumed writer needs."""
        if self._open is not None:
            self._open.sync()
        return {"shards": [s.to_json() for s in self.shards],
                "open": None if self._open is None else
                {"index": self._open.index, "tokens": self._open.tokens, "documents": self._open.docs}}

    def _restore(self, state: dict[str, Any]) -> None:
        """Re-adopt the files of an interrupted run: checked committed shards, the open one truncated."""
        for raw in state["shards"]:
            entry = ShardEntry(**raw)
            path = self.directory / entry.file
            if not path.exists() or sha256_file(path) != entry.sha256:
                raise ShardFormatError(f"{path}: changed since the interrupted run; start over with --overwrite")
            update_from_file(self._stream, path, NPY_HEADER_BYTES, entry.num_tokens * self.dtype.itemsize)
            self.shards.append(entry)
        open_state = state["open"]
        first_unwritten = len(self.shards)
        if open_state is not None:
            i, tokens, docs = open_state["index"], open_state["tokens"], open_state["documents"]
            tmp = self.directory / (shard_name(i) + TMP_SUFFIX)
            tmp_index = self.directory / (index_name(i) + TMP_SUFFIX)
            # The run may have committed this shard after its last checkpoint: take it back.
            for final, t in ((self.directory / shard_name(i), tmp), (self.directory / index_name(i), tmp_index)):
                if not t.exists() and final.exists():
                    os.replace(final, t)
            need = NPY_HEADER_BYTES + tokens * self.dtype.itemsize
            if not tmp.exists() or tmp.stat().st_size < need or not tmp_index.exists() or \
                    tmp_index.stat().st_size < NPY_HEADER_BYTES + docs * INDEX_DTYPE.itemsize:
                raise ShardFormatError(f"{tmp}: shorter than the interrupted run recorded; start over with --overwrite")
            update_from_file(self._stream, tmp, NPY_HEADER_BYTES, tokens * self.dtype.itemsize)
            self._open = _OpenShard(self.directory, i, self.dtype, tokens, docs)
            first_unwritten = i + 1
        # Shards past the checkpoint will be written again, byte for byte.
        for p in self.directory.iterdir():
            if _SHARD_FILE.match(p.name) and int(p.name[6:11]) >= first_unwritten:
                p.unlink()

    def finish(self, *, eos_id: int | None, eos_separates_documents: bool, tokenizer: dict[str, Any],
               settings: dict[str, Any], inputs: list[dict[str, Any]], stats: dict[str, Any],
               source_bytes: int, tool_version: str, allow_empty: bool = False) -> Manifest:
        """Commit the last shard and write manifest.json: from this moment the dataset is complete.

        `tokenizer` holds at least `kind` and `source`; its files must already be in DIR/tokenizer.
        An empty dataset is refused unless `allow_empty` (a part that `shards merge` will join).
        """
        if self._open is not None:
            if self._open.tokens:
                self.shards.append(self._open.commit(self.directory))
            else:
                self._open.close()
                self._open.path.unlink()
                self._open.index_path.unlink()
            self._open = None
        if not self.shards and not allow_empty:
            raise ShardFormatError(f"{self.directory}: no tokens to write; nothing would be trained on")
        manifest = build_manifest(
            self.directory, dtype=self.dtype, vocab_size=self.vocab_size, eos_id=eos_id,
            eos_separates_documents=eos_separates_documents, tokenizer=tokenizer, shards=self.shards,
            stream_sha256=self._stream.hexdigest(), settings=settings, inputs=inputs, stats=stats,
            source_bytes=source_bytes, tool_version=tool_version)
        checked = parse_manifest(manifest, self.directory / MANIFEST)  # an invalid one is never written
        with no_space(self.directory / MANIFEST):
            write_json_atomic(self.directory / MANIFEST, manifest)
        return checked


_SHARD_FILE = re.compile(r"^shard_\d{5}(\.docs)?\.npy(\.tmp)?$")


def remove_dataset(directory: Path) -> None:
    """Delete what a writer puts in `directory`, the manifest first so that nothing looks complete
    meanwhile; files the writer does not make (a user's own) are left alone."""
    directory = Path(directory)
    (directory / MANIFEST).unlink(missing_ok=True)
    fsync_dir(directory)
    for p in directory.iterdir():
        if _SHARD_FILE.match(p.name) and p.is_file():
            p.unlink()
    tok = directory / TOKENIZER_DIR
    if tok.is_dir() and not tok.is_symlink():
        shutil.rmtree(tok)


def build_manifest(directory: Path, *, dtype: np.dtype, vocab_size: int, eos_id: int | None,
                   eos_separates_documents: bool, tokenizer: dict[str, Any], shards: list[ShardEntry],
                   stream_sha256: str, settings: dict[str, Any], inputs: list[dict[str, Any]],
                   stats: dict[str, Any], source_bytes: int, tool_version: str) -> dict[str, Any]:
    """The manifest dict, fingerprint included. Nothing time- or machine-dependent goes in, so
    the same inputs and settings give the same bytes."""
    tok_dir = Path(directory) / TOKENIZER_DIR
    if not tok_dir.is_dir():
        raise ShardFormatError(f"{tok_dir}: missing; the tokenizer must be saved before the manifest")
    tok_hash = tokenizer_sha256(tok_dir)
    tok = dict(tokenizer, sha256=tok_hash)
    tok.setdefault("dir", TOKENIZER_DIR)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint(dtype.name, tok_hash, stream_sha256),
        "num_tokens": sum(s.num_tokens for s in shards),
        "num_documents": sum(s.num_documents for s in shards),
        "source_bytes": source_bytes,
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "eos_id": eos_id,
        "eos_separates_documents": eos_separates_documents,
        "tokenizer": tok,
        "stream_sha256": stream_sha256,
        "shards": [s.to_json() for s in shards],
        "settings": settings,
        "inputs": inputs,
        "stats": stats,
        "tool": {"name": "shardtrain", "version": tool_version},
    }
