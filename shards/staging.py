"""A new output directory that is either complete or absent: locked, marked while it is written,
emptied again when writing fails, so the same command can simply be run again."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from shards.errors import UsageError
from shards.layout import MANIFEST
from shards.lock import LOCK_NAME, DirectoryLock
from shards.manifest import fsync_dir

MARKER = ".incomplete"  # "COMMAND\n": this directory is being written by COMMAND, or its run died


class NewOutput:
    """`with NewOutput(out, "shards merge"):` -- write a new dataset directory into `out`.

    `out` must be absent, empty, or hold what a killed run of these commands left (its marker):
    that is cleared first (all of this is checked once the lock is held). While the block runs, `out` holds its writer lock and the marker;
    on success the marker goes (the manifest, written last inside the block, is what makes
    the dataset complete); on any failure everything written in `out` is removed, the manifest
    first, and a directory this created is removed too.
    """

    def __init__(self, out: Path, command: str):
        self.out = Path(out)
        self.command = command
        self._lock: DirectoryLock | None = None
        self._created = False

    def __enter__(self) -> Path:
        out = self.out
        self._refuse_foreign()  # early, so a foreign directory is refused without a lock file put in it
        self._created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        self._lock = DirectoryLock(out, self.command).acquire()
        marking = False
        try:
            # Again under the lock: another writer may have finished here since the look above, and
            # its complete dataset (no marker any more) must be refused, never written into and cleared.
            self._refuse_foreign()
            if (out / MARKER).exists():  # a killed run's leftovers, now that no one else writes here
                _clear(out)
            marking = True
            (out / MARKER).write_text(self.command + "\n", encoding="utf-8")
            fsync_dir(out)
        except BaseException:
            # __exit__ does not run when __enter__ fails: give the lock back here, so that a retry
            # in this process is not refused as busy, and leave no directory this call made.
            if marking:  # all else is cleared by now; a half-written marker of ours goes too
                (out / MARKER).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None
            if self._created:
                _rmdir_if_empty(out)
            raise
        return out

    def _refuse_foreign(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: exists and is not a directory")
        if out.is_dir() and _entries(out) and not (out / MARKER).exists():
            raise UsageError(f"--out {out}: not empty; choose a new directory")

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                (self.out / MARKER).unlink()
                fsync_dir(self.out)
            else:
                try:
                    _clear(self.out)
                except OSError:
                    pass  # the marker stays: the next run clears what is left
        finally:
            if self._lock is not None:
                self._lock.release()
        if exc_type is not None and self._created:
            _rmdir_if_empty(self.out)


def _rmdir_if_empty(out: Path) -> None:
    try:
        out.rmdir()
    except OSError:
        pass  # someone put something there meanwhile: leave it


def _entries(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.name != LOCK_NAME]


def _clear(out: Path) -> None:
    """Remove what a run wrote in `out` (the directory it alone writes): the manifest first, so
    nothing looks complete meanwhile, the marker last, so a kill halfway leaves it marked."""
    (out / MANIFEST).unlink(missing_ok=True)
    fsync_dir(out)
    for p in _entries(out):
        if p.name == MARKER:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    (out / MARKER).unlink(missing_ok=True)


def tree_files(src: Path) -> list[tuple[Path, int]]:
    """Every file under `src` with its size, in a fixed order. `src` must be checked already
    (shards.confine.check_tree, which load_manifest and check_inert run): no link in it leads out."""
    return [(p, p.stat().st_size) for p in sorted(src.rglob("*")) if p.is_file()]


def copy_files(src: Path, dst: Path, files: list[tuple[Path, int]]) -> None:
    """Copy `files` (from tree_files(src)) to the same relative names under `dst`, as plain files.

    Unlike shutil.copytree, a failure is the OSError itself (which shards.space turns into one
    line for a full disk), not a list of them.
    """
    dst.mkdir(parents=True, exist_ok=True)
    for p, _ in files:
        target = dst / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)
    fsync_dir(dst)


def same_filesystem(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False
