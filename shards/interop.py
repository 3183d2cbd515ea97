"""`shards export`: a dataset's token stream as llm.c `.bin` shards or one nanoGPT raw uint16 file.

The byte layouts are in shards.llmc; `shards import` is shards.importing. llm.c's loaders
(karpathy/llm.c `llmc/dataloader.h` dataloader_init, train_gpt2.py and train_llama3.py
DistributedDataLoader) assert `shard_ntok >= num_processes * B * T + 1` for *every* file, so
the size of the smallest file, usually the last, decides which runs can read an export.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shards.errors import UsageError
from shards.llmc import MAX_TOKENS, file_bytes, header, variant_for
from shards.lock import DirectoryLock
from shards.manifest import fsync_dir
from shards.reader import Dataset
from shards.space import RERUN, check_free, is_no_space, no_space_error, on_disk

_CHUNK = 16 << 20  # tokens per step: memory stays bounded for any file size


@dataclass(frozen=True, slots=True)
class Exported:
    files: list[Path]
    tokens: list[int]  # per file
    layout: str  # "llm.c gpt-2 (uint16)", "llm.c llama-3 (uint32)" or "nanoGPT (uint16)"


def file_ranges(ds: Dataset, tokens_per_file: int | None) -> list[tuple[int, int]]:
    """Token ranges [a, b) of the llm.c files: one per shard, or cut at document boundaries.

    With `tokens_per_file` N a file ends at the first document boundary at or past N tokens, as
    `preprocess --shard-tokens` ends shards, so documents never straddle files; the last file
    holds what is left.
    """
    if tokens_per_file is None:
        return [(int(ds.starts[i]), int(ds.starts[i + 1])) for i in range(len(ds.manifest.shards))]
    ranges, start, target = [], 0, tokens_per_file
    for i in range(len(ds.manifest.shards)):
        base = int(ds.starts[i])
        local = ds.document_starts(i)  # int64 (documents,): each document's first token, within shard i
        while (k := int(np.searchsorted(local, target - base, side="left"))) < len(local):
            stop = base + int(local[k])
            ranges.append((start, stop))
            start, target = stop, stop + tokens_per_file
    if start < ds.num_tokens:
        ranges.append((start, ds.num_tokens))
    return ranges


def _plan(ds: Dataset, fmt: str, tokens_per_file: int | None):
    if ds.num_tokens == 0:
        raise UsageError(f"{ds.path}: holds no tokens; nothing to export")
    if fmt == "nanogpt":
        if ds.dtype.itemsize != 2:
            raise UsageError(f"{ds.path}: its {ds.vocab_size:,}-token vocabulary needs uint32 ids, but nanoGPT's "
                             "train.bin holds uint16; --format llmc writes llm.c's Llama-3 variant (uint32) instead")
        if tokens_per_file is not None:
            raise UsageError("--tokens-per-file cuts llm.c files; --format nanogpt writes one file")
        return None, [(0, ds.num_tokens)]
    ranges = file_ranges(ds, tokens_per_file)
    big = next(((a, b) for a, b in ranges if b - a > MAX_TOKENS), None)
    if big is not None:
        fix = ("a smaller --tokens-per-file" if tokens_per_file
               else "--tokens-per-file N (or preprocess with a smaller --shard-tokens)")
        raise UsageError(f"{ds.path}: a file would hold {big[1] - big[0]:,} tokens, but an llm.c header counts at "
                         f"most {MAX_TOKENS:,}; pass {fix}")
    return variant_for(ds.dtype), ranges


def export(ds: Dataset, fmt: str, out: Path, name: str, *, tokens_per_file: int | None = None,
           progress: Callable[[int], None] | None = None) -> Exported:
    """Write the stream as llm.c shards (`NAME_000000.bin`, ...) or one nanoGPT file (`NAME.bin`).

    Files are written under hidden temporary names (`.NAME_000000.bin.tmp`, which no llm.c glob
    matches) and renamed only when all of them are complete, so a failed or killed export never
    leaves a set of `.bin` files that looks whole. The space it needs is checked first.
    """
    variant, ranges = _plan(ds, fmt, tokens_per_file)
    finals = [out / (f"{name}.bin" if variant is None else f"{name}_{i:06d}.bin") for i in range(len(ranges))]
    sizes = [file_bytes(variant, b - a) for a, b in ranges]
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with DirectoryLock(out, "shards export"):
            _refuse_old(out, name, variant is None)
            for stale in out.glob(f".{name}*.bin.tmp"):  # a killed export's: never renamed, never complete
                stale.unlink()
            needed = on_disk(sizes, out)
            check_free(out, needed, f"--out {out}: {len(ranges)} file(s) of {sum(b - a for a, b in ranges):,} tokens")
            _write_all(ds, variant, ranges, finals, sizes, needed, progress)
    except BaseException:
        if created:
            _rmdir_if_empty(out)
        raise
    layout = "nanoGPT (uint16)" if variant is None else f"llm.c {variant.name} ({variant.dtype.itemsize * 8}-bit ids)"
    return Exported(finals, [b - a for a, b in ranges], layout)


def _refuse_old(out: Path, name: str, raw: bool) -> None:
    old = sorted(out.glob(f"{name}.bin" if raw else f"{name}_*.bin"))
    if old:
        raise UsageError(f"--out {out}: already holds {old[0].name} (an earlier export?); llm.c reads every "
                         f"{name}_*.bin it finds, old and new together: choose another --out or --name, or remove them")


def _write_all(ds: Dataset, variant, ranges, finals: list[Path], sizes: list[int], needed: int, progress) -> None:
    temps = [p.with_name(f".{p.name}.tmp") for p in finals]
    done = 0
    current = finals[0]
    renamed: list[Path] = []
    try:
        for (a, b), final, tmp, size in zip(ranges, finals, temps, sizes):
            current = final
            with open(tmp, "wb") as f:
                if variant is not None:
                    f.write(header(variant, b - a))
                for s in range(a, b, _CHUNK):
                    chunk = ds.read(s, min(s + _CHUNK, b))  # already the dataset's little-endian dtype
                    f.write(chunk.data)
                    if progress:
                        progress(len(chunk))
                f.flush()
                os.fsync(f.fileno())
            done += size
        for tmp, final in zip(temps, finals):  # all complete: now they may be seen
            renamed.append(final)  # first: an interrupt right after the rename must not miss it
            os.replace(tmp, final)
        fsync_dir(finals[0].parent)
    except BaseException as e:
        # A part of the set renamed already would be globbed by llm.c as if it were all of it.
        for path in (*renamed, *temps):
            path.unlink(missing_ok=True)
        if isinstance(e, Exception) and is_no_space(e, current.parent):
            raise no_space_error(current, needed=needed, done=done,
                                 after=f"removed the files this export wrote: {RERUN}") from e
        raise


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
