"""Finding input files and planning who reads which bytes (whole runs, parts, tokenizer samples)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from preprocess.errors import InputError, UsageError

# File name suffix -> format. txt: one document per line; jsonl: one JSON object per line, the
# document under --text-key; parquet, arrow: one document per row, in the --text-key column.
FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".parquet": "parquet", ".arrow": "arrow"}
COLUMNAR = ("parquet", "arrow")  # read with pyarrow, row by row; never compressed around
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
# For messages, from the tables above: ".txt, .jsonl (plain or .gz/.bz2/.xz/.zst), .parquet, .arrow".
READ_FORMATS = (f"{', '.join(e for e, f in FORMATS.items() if f not in COLUMNAR)} (plain or {'/'.join(COMPRESSIONS)}), "
                f"{', '.join(e for e, f in FORMATS.items() if f in COLUMNAR)}")


@dataclass(frozen=True, slots=True)
class InputFile:
    path: Path
    name: str  # as recorded in the manifest: the argument, or argument/relative path inside it
    size: int  # bytes on disk
    fmt: str  # "txt", "jsonl", "parquet" or "arrow"
    compression: str | None


@dataclass(frozen=True, slots=True)
class Unit:
    """A slice of one input: the documents whose position lies in [start, stop).

    A line's position is the offset of its first decompressed byte; row r of a Parquet or
    Arrow file of R rows and S bytes lies at S*r//R, so byte ranges split those files too.
    `stop` None means to the end. A compressed file is always one whole unit, since it cannot
    be entered in the middle.
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
    if fmt in COLUMNAR and compression:
        return None  # Parquet and Arrow compress inside; a .parquet.gz is not read
    return (fmt, compression) if fmt else None


def discover(arguments: list[str]) -> tuple[list[InputFile], int]:
    """Expand files and directories (recursively, sorted) into input files; also count the files
    skipped inside directories because of their extension."""
    from preprocess.walk import refuse_special, stat_input, walk

    found: list[InputFile] = []
    seen: set[Path] = set()
    ignored = 0
    for arg in arguments:
        root = Path(arg)
        mode = stat_input(root, arg).st_mode
        if stat.S_ISDIR(mode):
            paths, skipped = walk(root, Path(arg).as_posix(), lambda p: classify(p) is not None)
            ignored += skipped
            for p, name in paths:
                _add(found, seen, p, name, classify(p))
        else:
            kind = classify(root)
            if not stat.S_ISREG(mode):
                refuse_special(arg, mode)
            if kind is None:
                raise UsageError(f"{arg}: unknown input format; expected {READ_FORMATS}")
            _add(found, seen, root, Path(arg).as_posix(), kind)
    if not found:
        raise InputError(f"no input files found in {', '.join(arguments)} (looked for {READ_FORMATS})")
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
    if fmt in COLUMNAR:
        import_pyarrow(name, fmt)
    found.append(InputFile(path=path, name=name, size=path.stat().st_size, fmt=fmt, compression=compression))


def import_pyarrow(name: str, fmt: str):
    """pyarrow (for the Parquet or Arrow input `name`), or one line naming the extra to install."""
    try:
        import pyarrow
    except ImportError:
        raise UsageError(f"{name}: reading {'Parquet' if fmt == 'parquet' else 'Arrow'} needs pyarrow: "
                         "pip install 'shardtrain[parquet]'") from None
    return pyarrow


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

    A plain, Parquet or Arrow file may be shared by neighbouring parts: each takes the
    documents whose position lies in its range. A compressed file goes whole to the part where
    it starts. Concatenating the parts' documents in order gives exactly the documents of a
    single run.
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
    spaced slices (plain, Parquet and Arrow files) or as a prefix (compressed files).
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


def unit_bytes(f: InputFile, u: Unit) -> int:
    """The unit's share of the progress bar, in bytes on disk."""
    if f.compression is not None:
        return f.size
    return (f.size if u.stop is None else u.stop) - u.start
