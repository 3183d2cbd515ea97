"""Dataset: a complete dataset directory opened read-only as one logical token stream."""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shards.errors import ShardFormatError
from shards.layout import INDEX_DTYPE, read_npy_header
from shards.manifest import Manifest, load_manifest


class Dataset:
    """Read-only view of a dataset directory.

    Opening checks the manifest against the files (present, sizes, dtype, header length) but
    reads no token data. `read(a, b)` returns tokens [a, b) of the whole stream, across shard
    boundaries, with positioned reads (os.pread): unlike a long-lived np.memmap, whose touched
    pages pile up in the process's RSS (nanoGPT issue 287), this keeps memory flat however much
    is read. `tokens(i)` memory-maps shard i for whole-array work (verify, export). Nothing is
    ever written into the directory, so it works on a read-only filesystem.
    """

    def __init__(self, path: str | os.PathLike[str], *, manifest: Manifest | None = None):
        """`manifest`: what load_manifest(path) returned, when the caller has it already."""
        self.path = Path(path)
        self.manifest: Manifest = manifest if manifest is not None else load_manifest(self.path)
        m = self.manifest
        self.dtype = m.dtype
        self._offsets: list[int] = []  # data offset of each shard file (its .npy header length)
        for entry in m.shards:
            p = self.path / entry.file
            if not p.exists():
                raise ShardFormatError(f"{p}: shard listed in the manifest is missing; re-copy the dataset")
            size = p.stat().st_size
            if size != entry.bytes:
                raise ShardFormatError(
                    f"{p}: {size} bytes on disk but the manifest says {entry.bytes} (truncated or resized); "
                    "re-copy the dataset or re-run preprocess")
            dtype, length, offset = read_npy_header(p)
            if dtype != m.dtype or length != entry.num_tokens:
                raise ShardFormatError(
                    f"{p}: header says {length} x {dtype.name}, manifest says {entry.num_tokens} x {m.dtype.name}")
            if offset + length * dtype.itemsize != size:  # else reads past the header would miss the ids
                raise ShardFormatError(f"{p}: a {offset}-byte header and {length} ids do not make its {size} bytes; "
                                       "run `shards verify`")
            self._offsets.append(offset)
            # The document index is part of the dataset too: refuse a broken copy now, not at
            # the first document lookup deep inside a training run.
            ip = self.path / entry.index_file
            if not ip.exists():
                raise ShardFormatError(f"{ip}: document index listed in the manifest is missing; re-copy the dataset")
            if ip.stat().st_size != entry.index_bytes:
                raise ShardFormatError(
                    f"{ip}: {ip.stat().st_size} bytes on disk but the manifest says {entry.index_bytes} "
                    "(truncated or resized); re-copy the dataset or re-run preprocess")
        # Global token offset where each shard starts, plus the total at the end: (S + 1,)
        self.starts = np.concatenate(([0], np.cumsum([s.num_tokens for s in m.shards]))).astype(np.int64)
        self._starts = [int(x) for x in self.starts]
        self.doc_starts = np.concatenate(([0], np.cumsum([s.num_documents for s in m.shards]))).astype(np.int64)
        self._fds: dict[int, int] = {}
        self._maps: dict[int, np.memmap] = {}
        self._doc_maps: dict[int, np.ndarray] = {}

    # -- facts --------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        return self.manifest.num_tokens

    @property
    def num_documents(self) -> int:
        return self.manifest.num_documents

    @property
    def vocab_size(self) -> int:
        return self.manifest.vocab_size

    @property
    def eos_id(self) -> int | None:
        return self.manifest.eos_id

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / self.manifest.tokenizer_dir

    def __len__(self) -> int:
        return self.num_tokens

    def __repr__(self) -> str:
        return (f"Dataset({str(self.path)!r}, tokens={self.num_tokens}, documents={self.num_documents}, "
                f"shards={len(self.manifest.shards)}, dtype={self.dtype.name})")

    # -- tokens -------------------------------------------------------------------------------
    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the stream as a new array of the dataset's dtype."""
        out = np.empty(max(0, stop - start), dtype=self.dtype)
        self.read_into(start, out)
        return out

    def read_into(self, start: int, out: npt.NDArray[Any]) -> None:
        """Fill `out` (dataset dtype, C-contiguous) with tokens [start, start + len(out))."""
        n = len(out)
        if start < 0 or start + n > self.num_tokens:
            raise IndexError(f"tokens [{start}, {start + n}) outside the dataset's [0, {self.num_tokens})")
        if out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {self.dtype.name} array")
        view = memoryview(out).cast("B")
        itemsize = self.dtype.itemsize
        starts = self._starts  # plain ints: this runs for every block, numpy scalars are slow here
        done = 0
        shard = bisect.bisect_right(starts, start) - 1
        while done < n:
            at = start + done
            take = min(n - done, starts[shard + 1] - at)
            want = take * itemsize
            got = os.preadv(self._fd(shard), [view[done * itemsize:done * itemsize + want]],
                            self._offsets[shard] + (at - starts[shard]) * itemsize)
            if got != want:
                raise ShardFormatError(f"{self.path / self.manifest.shards[shard].file}: short read (file changed?)")
            done += take
            shard += 1

    def tokens(self, shard: int) -> np.memmap:
        """Shard `shard` as a read-only memory map (opened on first use)."""
        if shard not in self._maps:
            self._maps[shard] = np.load(self.path / self.manifest.shards[shard].file, mmap_mode="r")
        return self._maps[shard]

    # -- documents ----------------------------------------------------------------------------
    def document_span(self, d: int) -> tuple[int, int]:
        """Global [start, stop) token range of document d (its trailing EOS included)."""
        if not 0 <= d < self.num_documents:
            raise IndexError(f"document {d} outside [0, {self.num_documents})")
        shard = int(np.searchsorted(self.doc_starts, d, side="right")) - 1
        local = d - int(self.doc_starts[shard])
        starts = self._doc_index(shard)
        n = self.manifest.shards[shard].num_tokens
        begin = int(starts[local])
        end = int(starts[local + 1]) if local + 1 < len(starts) else n
        # The index was hashed at verify time, not here: check what this lookup relies on.
        if not (0 <= begin < end <= n) or (local == 0 and begin != 0):
            p = self.path / self.manifest.shards[shard].index_file
            raise ShardFormatError(f"{p}: document {local} of the shard spans [{begin}, {end}), not inside its {n} "
                                   "tokens in increasing order; run `shards verify`")
        base = int(self.starts[shard])
        return base + begin, base + end

    def document_starts(self, shard: int) -> np.ndarray:
        """Where each document of shard `shard` starts, in the shard's own token offsets (int64)."""
        return self._doc_index(shard)

    def document(self, d: int) -> np.ndarray:
        return self.read(*self.document_span(d))

    def _doc_index(self, shard: int) -> np.ndarray:
        if shard not in self._doc_maps:
            entry = self.manifest.shards[shard]
            p = self.path / entry.index_file
            try:
                arr = np.load(p, mmap_mode="r")
            except (OSError, ValueError) as e:  # numpy says ValueError for a bad header
                raise ShardFormatError(f"{p}: unreadable document index ({e}); run `shards verify`") from None
            if arr.dtype != INDEX_DTYPE or arr.shape != (entry.num_documents,):
                raise ShardFormatError(f"{p}: document index does not match the manifest; run `shards verify`")
            self._doc_maps[shard] = arr
        return self._doc_maps[shard]

    # -- plumbing -----------------------------------------------------------------------------
    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(self.path / self.manifest.shards[shard].file, os.O_RDONLY)
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._maps.clear()
        self._doc_maps.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self) -> dict[str, Any]:
        # File descriptors and maps do not cross process boundaries: a worker reopens lazily.
        state = self.__dict__.copy()
        state.update(_fds={}, _maps={}, _doc_maps={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
