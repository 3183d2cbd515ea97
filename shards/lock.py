"""One writer per directory: a kernel lock (flock) on a file in it, gone when the process dies.

`preprocess --out DIR` and `train --out RUN` hold DIR/.lock while they write. A second writer
is refused at once, naming the holder's pid; a crashed or killed holder leaves at most a stale
file, which the kernel no longer locks, so the next writer just takes it. Readers never lock:
a dataset on a read-only filesystem still opens.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from shards.errors import UsageError

LOCK_NAME = ".lock"
# File descriptors of the locks this process holds. A forked child (a DataLoader worker) closes
# its copies at once: a flock lives as long as any descriptor of it, so a child that outlives a
# killed parent (until its watchdog notices) would otherwise keep the directory locked.
_HELD: set[int] = set()


def _drop_inherited() -> None:
    for fd in list(_HELD):
        try:
            os.close(fd)  # this copy only: never LOCK_UN, which would unlock the parent too
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited)


class DirectoryBusyError(UsageError):
    """Another live process holds the directory's lock."""


class DirectoryLock:
    """`with DirectoryLock(dir, "preprocess"):` -- exclusive, non-blocking, released on exit.

    The lock file holds "PID COMMAND" of its holder, for the refusal message. It is removed on
    release; a writer that opened the file just before that removal notices (the path no longer
    names the inode it locked) and retries, so two writers never both hold a lock.
    """

    def __init__(self, directory: str | os.PathLike[str], command: str, *, name: str = LOCK_NAME):
        self.directory = Path(directory)
        self.command = command
        self.path = self.directory / name
        self._fd: int | None = None

    def acquire(self) -> "DirectoryLock":
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _read_holder(fd)
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise DirectoryBusyError(
                    f"{self.directory}: another {holder or 'process'} is writing here right now; wait for it to "
                    "finish or stop it (one writer per directory)") from None
            if _same_file(fd, self.path):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {self.command}\n".encode())
                self._fd = fd
                _HELD.add(fd)
                return self
            os.close(fd)  # the holder removed the file as we opened it: lock the new one
        raise DirectoryBusyError(f"{self.path}: could not take the lock (the file keeps being replaced)")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink()
        except OSError:
            pass  # the directory went away, or is read-only now: the kernel lock still ends below
        _HELD.discard(self._fd)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st, now = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)


def _read_holder(fd: int) -> str:
    """'shards merge (pid 1234)' from the lock file's "PID COMMAND" line (the command may be
    several words); '' if it is not written yet."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip().split(maxsplit=1)
    except OSError:
        return ""
    if len(text) == 2 and text[0].isdigit():
        return f"{text[1].strip()} (pid {text[0]})"
    if text and text[0].isdigit():
        return f"process (pid {text[0]})"
    return ""
