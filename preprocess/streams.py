"""Opening an input file as a byte stream: decompression, and never blocking on what is not a file."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat
import zlib
from typing import BinaryIO

from preprocess.errors import InputError
from preprocess.inputs import InputFile


def require_regular(f: InputFile, fd: int | None = None) -> None:
    """Refuse an input that is no longer a regular file: by os.stat (which never blocks, unlike
    open), or by fstat of `fd`, the file opened without blocking."""
    try:
        mode = os.stat(f.path).st_mode if fd is None else os.fstat(fd).st_mode
    except OSError as e:
        raise InputError(f"{f.name}: cannot open ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{f.name}: not a regular file any more; preprocess reads regular files only")


def read_errors(f: InputFile) -> tuple[type[BaseException], ...]:
    """What reading `f`'s stream raises for a damaged or unreadable file (for one-line errors):
    gzip raises zlib.error for a bad deflate stream, zstandard its own ZstdError."""
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, lzma.LZMAError, zlib.error)
    if f.compression == "zstd":
        import zstandard

        errors += (zstandard.ZstdError,)
    return errors


def open_binary(f: InputFile) -> tuple[BinaryIO, BinaryIO]:
    """(decompressed stream, raw file); the raw file's position measures progress.

    Opened without blocking and checked to be a regular file: a FIFO or device swapped in
    since the inputs were listed is refused here instead of hanging or reading forever.
    """
    try:
        fd = os.open(f.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputError(f"{f.name}: cannot open ({e.strerror})") from None
    try:
        require_regular(f, fd)
    except InputError:
        os.close(fd)
        raise
    raw = os.fdopen(fd, "rb")  # O_NONBLOCK does nothing for regular files
    if f.compression is None:
        return raw, raw
    if f.compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    if f.compression == "bz2":
        return bz2.BZ2File(raw, mode="rb"), raw
    if f.compression == "xz":
        return lzma.LZMAFile(raw, mode="rb"), raw
    import zstandard

    # read_across_frames: pzstd and concatenated files hold several frames; stopping after the
    # first would silently drop the rest.
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True), raw
