"""Finding input files and planning who reads which bytes (whole runs, parts, tokenizer samples)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from preprocess.errors import InputError, UsageError

FORMATS = {".txt": "txt", ".jsonl": "jsonl"}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


@dataclass(frozen=True, slots=True)
class InputFile:
    path: Path
    name: str  # as recorded in the manifest: the argument, or argument/relative path inside it
    size: int  # bytes on disk
    fmt: str  # "txt" (one document per line) or "jsonl"
    compression: str | None


@dataclass(frozen=True, slots=True)
class Unit:
    """A slice of one input: the documents whose first byte lies in [start, stop).

    Offsets count decompressed bytes; `stop` None means to the end. A compressed file is
    always one whole unit, since it cannot be entered in the middle.
    """

    file: int  # index into the input list
    start: int
    stop: int | None


def classify(path: Path) -> tuple[str, str | None] | None:
    """(format, compression) from the file name, or None for a file this tool does not read."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    return (fmt, compression) if fmt else None


def discover(arguments: list[str]) -> tuple[list[InputFile], int]:
    """Expand files and directories (recursively, sorted) into input files; also count the files
    skipped inside directories because of their extension."""
    found: list[InputFile] = []
    seen: set[Path] = set()
    ignored = 0
    for arg in arguments:
        root = Path(arg)
        if not root.exists():
            raise InputError(f"{arg}: no such file or directory")
        if root.is_dir():
            try:
                candidates = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.as_posix())
            except OSError as e:
                raise InputError(f"{arg}: cannot list directory ({e.strerror})") from None
            for p in candidates:
                kind = classify(p)
                if kind is None:
                    ignored += 1
                    continue
                name = (Path(arg) / p.relative_to(root)).as_posix()
                _add(found, seen, p, name, kind)
        else:
            kind = classify(root)
            if kind is None:
                raise UsageError(
                    f"{arg}: unknown input format; expected .txt (one document per line) or .jsonl, "
                    "optionally compressed as .gz, .bz2, .xz or .zst")
            _add(found, seen, root, Path(arg).as_posix(), kind)
    if not found:
        raise InputError(f"no input files found in {', '.join(arguments)} (looked for .txt and .jsonl, "
                         "optionally .gz/.bz2/.xz/.zst)")
    return found, ignored


def _add(found: list[InputFile], seen: set[Path], path: Path, name: str, kind: tuple[str, str | None]) -> None:
    real = path.resolve()
    if real in seen:
        return
    seen.add(real)
    if not os.access(path, os.R_OK):
        raise InputError(f"{name}: permission denied")
    fmt, compression = kind
    if compression == "zstd":
        try:
            import zstandard  # noqa: F401
        except ImportError:
            raise UsageError(f"{name}: reading .zst needs zstandard: pip install 'shardtrain[zstd]'") from None
    found.append(InputFile(path=path, name=name, size=path.stat().st_size, fmt=fmt, compression=compression))


def parse_part(text: str | None) -> tuple[int, int]:
    """'K/N' -> (K, N) with 0 <= K < N; None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--part {text!r}: expected K/N, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise UsageError(f"--part {text}: need 0 <= K < N")
    return k, n


def plan_part(files: list[InputFile], k: int, n: int) -> list[Unit]:
    """Units of part k of n: the inputs' bytes, laid end to end, cut into n equal ranges.

    A plain file may be shared by neighbouring parts: each takes the documents that start in
    its range. A compressed file goes whole to the part where it starts. Concatenating the
    parts' documents in order gives exactly the documents of a single run.
    """
    total = sum(f.size for f in files)
    lo, hi = total * k // n, total * (k + 1) // n
    units: list[Unit] = []
    g = 0  # global offset of the current file's first byte
    for i, f in enumerate(files):
        if f.compression is not None or f.size == 0:
            if _owner(g, total, n) == k:  # the part whose byte range holds the file's start
                units.append(Unit(i, 0, None))
        else:
            a, b = max(lo - g, 0), min(hi - g, f.size)
            if a < b:
                units.append(Unit(i, a, None if b == f.size else b))
        g += f.size
    return units


def _owner(g: int, total: int, n: int) -> int:
    """The part k with total*k//n <= g < total*(k+1)//n (the last part for g == total)."""
    if total == 0:
        return 0
    k = min(n - 1, g * n // total)
    while k > 0 and total * k // n > g:
        k -= 1
    while k < n - 1 and total * (k + 1) // n <= g:
        k += 1
    return k


def plan_sample(files: list[InputFile], budget: int, windows: int = 8) -> list[Unit]:
    """Units for a bounded, deterministic tokenizer-training sample spread over every input.

    Each file gets a share of `budget` in proportion to its size, read as `windows` evenly
    spaced slices (plain files) or as a prefix (compressed files).
    """
    total = sum(f.size for f in files) or 1
    units: list[Unit] = []
    for i, f in enumerate(files):
        share = budget * f.size // total
        if f.size == 0:
            continue
        if share >= f.size:
            units.append(Unit(i, 0, None))
        elif f.compression is not None:
            units.append(Unit(i, 0, max(share, 1)))
        else:
            step = f.size // windows
            width = max(share // windows, 1)
            units += [Unit(i, w * step, min(w * step + width, f.size)) for w in range(windows)]
    return units
