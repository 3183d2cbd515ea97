"""A small filesystem that fills up: a tmpfs mounted for one test, for disk-full (ENOSPC) checks.

`small_disk(size)` mounts a fresh tmpfs of `size` bytes under the test's tmp_path and returns a
SmallDisk; every mount is unmounted at teardown, whatever the test did. Mounting needs root and
a kernel (or container) that allows it; elsewhere the test is skipped, saying why. Use it from
any test module with `from tests.tmpfs import small_disk  # noqa: F401` (pytest finds fixtures
in the module namespace).

    def test_x(small_disk):
        disk = small_disk(2 << 20)        # 2 MiB
        disk.fill(leave=100_000)          # about 100 kB stay free
        ...run the command into disk.path, expect ENOSPC...
        disk.unfill()                     # or disk.resize(64 << 20): space is freed
        ...run it again...
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PAGE = 4096  # tmpfs counts space in pages
_FILLER = ".filler"


@dataclass
class SmallDisk:
    """A mounted tmpfs: `path` is its root."""

    path: Path
    size: int
    _fillers: list[Path] = field(default_factory=list)

    def free(self) -> int:
        """Bytes a writer can still use here."""
        return shutil.disk_usage(self.path).free

    def fill(self, leave: int) -> Path:
        """Write a filler file so that about `leave` bytes (rounded down to a page) stay free."""
        take = self.free() - max(0, leave)
        p = self.path / f"{_FILLER}{len(self._fillers)}"
        with open(p, "wb") as f:
            chunk = b"\xff" * (1 << 20)
            while take > 0:
                n = min(take, len(chunk))
                f.write(chunk[:n])
                take -= n
        self._fillers.append(p)
        return p

    def unfill(self) -> None:
        """Remove the filler files: the space they took is free again."""
        while self._fillers:
            self._fillers.pop().unlink(missing_ok=True)

    def resize(self, size: int) -> None:
        """Grow (or shrink, down to what is used) the filesystem without unmounting it."""
        _mount(["-o", f"remount,size={size}", str(self.path)])
        self.size = size


def _mount(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=True)


def _why_not() -> str | None:
    """Why a tmpfs cannot be mounted here, or None when it may be tried."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a tmpfs needs root (run the disk-full tests as root, or in a VM that allows it)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount command on this machine"
    return None


def _unmount(path: Path) -> None:
    done = subprocess.run(["umount", str(path)], capture_output=True)
    if done.returncode != 0:  # something still holds a file open there: detach it anyway
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[..., SmallDisk]]:
    """small_disk(size_bytes, name="disk") -> SmallDisk, a tmpfs mounted at tmp_path/name."""
    reason = _why_not()
    mounted: list[Path] = []

    def make(size: int, name: str = "disk") -> SmallDisk:
        if reason:
            pytest.skip(reason)
        where = tmp_path / name
        where.mkdir()
        try:
            _mount(["-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)])
        except subprocess.CalledProcessError as e:
            pytest.skip(f"cannot mount a tmpfs here ({(e.stderr or '').strip() or e}); a container may forbid it")
        mounted.append(where)
        return SmallDisk(where, size)

    try:
        yield make
    finally:
        for where in reversed(mounted):
            _unmount(where)
