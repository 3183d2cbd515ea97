"""Disk space: refuse a write whose size is known before it starts, and turn ENOSPC into one
line that names the path (shards.errors.NoSpaceError)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shards.errors import NoSpaceError

RERUN = "free space (or choose another place) and run the same command again"
# torch.save reports a full disk as a RuntimeError that never says so ("file write failed");
# an error of that kind with less than this left free is taken for ENOSPC.
_NEARLY_FULL = 1 << 20


def _existing(path: Path) -> Path:
    """`path` or its nearest existing parent: where the filesystem can be asked before writing."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer can still use on the filesystem that holds (or will hold) path."""
    try:
        return shutil.disk_usage(_existing(Path(path))).free
    except OSError:
        return None


def on_disk(sizes: Iterable[int], path: str | os.PathLike[str]) -> int:
    """What files of these sizes take on path's filesystem: each rounded up to whole blocks."""
    try:
        block = os.statvfs(_existing(Path(path))).f_frsize or 4096
    except OSError:
        block = 4096
    return sum(-(-int(s) // block) * block for s in sizes)


def size_text(n: int) -> str:
    """12345678 -> '12,345,678 bytes = 12.3 MB': the exact figure, and one a person reads."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n:,} bytes = {n / scale:.1f} {unit}"
    return f"{n:,} bytes"


def check_free(path: str | os.PathLike[str], needed: int, what: str) -> None:
    """Refuse before writing anything when `needed` bytes will not fit where `path` goes.

    `what` says what the space is for, e.g. "--out bins: 12 llm.c files".
    """
    free = free_bytes(path)
    if free is not None and needed > free:
        raise NoSpaceError(f"{what} need {size_text(needed)}, but the filesystem of {path} has only "
                           f"{size_text(free)} free; nothing was written: {RERUN}")


def is_no_space(e: BaseException, path: str | os.PathLike[str] | None = None, needed: int = 0) -> bool:
    """Whether `e` means the disk (or a quota) is full, however the library that raised it says so.

    `needed`: the bytes the failed write wanted; called after its partial files are removed, a
    RuntimeError with less than that free (torch.save's way of saying ENOSPC) counts too.
    """
    if isinstance(e, NoSpaceError):
        return True
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(e, shutil.Error):  # copytree gathers its errors as (src, dst, text) triples
        return any("No space left on device" in str(x) for x in e.args)
    text = str(e)
    if "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text:
        return True  # the Rust `tokenizers` library raises a bare Exception("... (os error 28)")
    if isinstance(e, RuntimeError) and path is not None:
        free = free_bytes(path)
        return free is not None and free < max(_NEARLY_FULL, needed)
    return False


def no_space_error(path: str | os.PathLike[str], *, needed: int | None = None, done: int | None = None,
                   after: str = f"nothing written looks complete: {RERUN}") -> NoSpaceError:
    """The one-line error for a full disk met while writing `path`."""
    facts = []
    if needed is not None:
        facts.append(f"needed in all: {size_text(needed)}")
    if done is not None:
        facts.append(f"written: {size_text(done)}")
    free = free_bytes(path)
    if free is not None:
        facts.append(f"free: {size_text(free)}")
    detail = f" ({'; '.join(facts)})" if facts else ""
    return NoSpaceError(f"{path}: no space left on device{detail}; {after}")


@contextmanager
def no_space(path: str | os.PathLike[str], *, needed: int | None = None,
             after: str = f"nothing written looks complete: {RERUN}") -> Iterator[None]:
    """Turn a full disk met inside the block into one NoSpaceError naming `path`.

    The file an OSError names, when it names one, is more precise than `path` and is used
    instead (its second file when it has two: shutil.copyfile names source, then destination).
    Errors that are not about space pass through unchanged; so does a NoSpaceError raised
    further in, which already names its file.
    """
    try:
        yield
    except NoSpaceError:
        raise
    except Exception as e:
        if not is_no_space(e, path):
            raise
        named = (e.filename2 or e.filename) if isinstance(e, OSError) else None
        where = named or path
        raise no_space_error(where, needed=needed, after=after) from e
