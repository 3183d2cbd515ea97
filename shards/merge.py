"""Joining datasets made by `preprocess --part K/N` (or any datasets of one tokenizer) into one.

Shard files are hard-linked into the output, never copied, when both lie on one filesystem;
the merged dataset has the same token stream and fingerprint as a single run over all inputs.
What must be copied (the tokenizer, and the shards of parts on another filesystem) is checked
against the free space first; a merge that fails, a full disk included, leaves no --out behind
and no manifest, so the same command can simply be run again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from shards.errors import ShardFormatError, UsageError
from shards.hashing import hash_shard, sha256_file, tokenizer_sha256
from shards.layout import MANIFEST, TOKENIZER_DIR, index_name, read_npy_header, shard_name
from shards.manifest import (Manifest, ShardEntry, load_manifest, parse_manifest, tokenizer_mismatch,
                             write_json_atomic)
from shards.space import RERUN, check_free, no_space, on_disk
from shards.staging import NewOutput, copy_files, same_filesystem, tree_files
from shards.writer import build_manifest



def _part_of(m: Manifest) -> tuple[int, int] | None:
    part = (m.raw.get("settings") or {}).get("part")
    if not part:
        return None
    k, n = part.split("/")
    return int(k), int(n)


def order_parts(paths: list[Path]) -> list[tuple[Path, Manifest]]:
    """The datasets in stream order, checked to be mergeable.

    Parts of one `--part K/N` run are sorted by K and must all be there; datasets without part
    settings are joined in the order given.
    """
    items = [(p, load_manifest(p)) for p in paths]
    first = items[0][1]
    if clash := tokenizer_mismatch(items):
        raise UsageError(f"{clash[0]} and {clash[1]} were tokenized with different tokenizers; they cannot be merged")
    for p, m in items[1:]:
        if (m.dtype, m.vocab_size, m.eos_id, m.eos_separates_documents) != \
                (first.dtype, first.vocab_size, first.eos_id, first.eos_separates_documents):
            raise UsageError(f"{p} and {items[0][0]} differ in dtype, vocabulary or EOS settings")
    parts = [_part_of(m) for _, m in items]
    if all(x is None for x in parts):
        return items
    if any(x is None for x in parts):
        raise UsageError("some inputs are parts of a --part run and some are not; merge the parts of one run")
    n = parts[0][1]
    if any(x[1] != n for x in parts) or sorted(x[0] for x in parts) != list(range(n)):
        have = ", ".join(f"{k}/{m}" for k, m in parts)
        raise UsageError(f"need each part 0/{n} .. {n - 1}/{n} exactly once, got {have}")
    base = {k: v for k, v in (first.raw.get("settings") or {}).items() if k != "part"}
    for p, m in items:
        if {k: v for k, v in (m.raw.get("settings") or {}).items() if k != "part"} != base:
            raise UsageError(f"{p}: made with other settings than the other parts")
    return sorted(items, key=lambda it: _part_of(it[1])[0])


def _place(src: Path, dst: Path) -> bool:
    """Hard-link src to dst; copy when they are on different filesystems. True if linked."""
    try:
        os.link(src, dst)
        return True
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(src, dst)
        return False


def merge(paths: list[Path], out: Path, progress: Callable[[int], None] | None = None) -> tuple[Manifest, int]:
    """Merge datasets into `out`; returns the manifest and how many files had to be copied."""
    items = order_parts(paths)
    tok_src = items[0][0] / items[0][1].tokenizer_dir
    tok_files = tree_files(tok_src)  # load_manifest confined it: no link in it leads out of it
    with NewOutput(out, "shards merge"):
        # Parts on another filesystem are copied: their bytes must fit, with the tokenizer's.
        copies = [e.bytes + e.index_bytes for p, m in items if not same_filesystem(p, out) for e in m.shards]
        needed = on_disk([*copies, *(size for _, size in tok_files)], out)
        check_free(out, needed, f"--out {out}: the tokenizer and {len(copies)} copied shard(s)")
        after = f"removed what this merge wrote: {RERUN}"
        with no_space(out / TOKENIZER_DIR, needed=needed, after=after):
            copy_files(tok_src, out / TOKENIZER_DIR, tok_files)
        # The parts' manifests agree on the tokenizer's hash; what was copied must be that tokenizer,
        # or the merged manifest (which hashes the copy) would name another one.
        if tokenizer_sha256(out / TOKENIZER_DIR) != items[0][1].tokenizer_sha256:
            raise ShardFormatError(f"{tok_src}: tokenizer files differ from the sha256 in {items[0][0] / MANIFEST}; "
                                   f"run `shards verify {items[0][0]}`")
        stream = hashlib.sha256()
        shards: list[ShardEntry] = []
        copied = 0
        for path, m in items:
            for entry in m.shards:
                i = len(shards)
                src = path / entry.file
                file_hash = _hash_shard(src, entry, stream, m, progress)  # checks the part while reading it
                if file_hash != entry.sha256:
                    raise ShardFormatError(f"{src}: sha256 differs from its manifest; run `shards verify {path}`")
                index = path / entry.index_file
                if sha256_file(index) != entry.index_sha256:  # a document index is small: hashed whole
                    raise ShardFormatError(f"{index}: sha256 differs from its manifest; run `shards verify {path}`")
                for a, b in ((src, out / shard_name(i)), (index, out / index_name(i))):
                    with no_space(b, needed=needed, after=after):
                        copied += not _place(a, b)
                shards.append(ShardEntry(shard_name(i), entry.num_tokens, entry.num_documents, entry.bytes,
                                         entry.sha256, index_name(i), entry.index_bytes, entry.index_sha256))
        head = items[0][1]
        first = head.raw
        settings = {**(first.get("settings") or {}), "part": None}
        manifest = build_manifest(
            out, dtype=head.dtype, vocab_size=head.vocab_size, eos_id=head.eos_id,
            eos_separates_documents=head.eos_separates_documents,
            # The tokenizer files were copied to out/tokenizer whatever a part called its directory.
            tokenizer={k: v for k, v in first["tokenizer"].items() if k not in ("sha256", "dir")}, shards=shards,
            stream_sha256=stream.hexdigest(), settings=settings, inputs=_merged_inputs([m for _, m in items]),
            stats=_summed([m.raw.get("stats") or {} for _, m in items]),
            source_bytes=sum(int(m.raw.get("source_bytes", 0)) for _, m in items),
            tool_version=(first.get("tool") or {}).get("version", "?"))
        merged = parse_manifest(manifest, out / MANIFEST)  # an invalid one is never written
        with no_space(out / MANIFEST, after=after):
            write_json_atomic(out / MANIFEST, manifest)  # last: from here on the dataset is complete
    return merged, copied


def _hash_shard(src: Path, entry: ShardEntry, stream, m: Manifest, progress) -> str:
    dtype, length, offset = read_npy_header(src)
    if dtype != m.dtype or length != entry.num_tokens or src.stat().st_size != entry.bytes:
        raise ShardFormatError(f"{src}: does not match its manifest (truncated or resized?)")
    return hash_shard(src, offset, stream, (lambda chunk: progress(len(chunk) // dtype.itemsize)) if progress else None)


def _summed(dicts: list[dict]) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return out


def _merged_inputs(manifests: list[Manifest]) -> list[dict]:
    """Inputs in order, counts of a file shared by neighbouring parts added together."""
    merged: dict[str, dict] = {}
    for m in manifests:
        for entry in m.raw.get("inputs") or []:
            have = merged.setdefault(entry["name"], {"name": entry["name"], "bytes": entry.get("bytes")})
            for k, v in entry.items():
                if k not in ("name", "bytes") and isinstance(v, (int, float)):
                    have[k] = have.get(k, 0) + v
    return list(merged.values())
