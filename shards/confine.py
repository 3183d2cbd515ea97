"""Confinement: every path a manifest names stays inside its dataset directory.

A dataset directory may come from another team, so the names in its manifest are untrusted.
Two layers, both run by `load_manifest` (and so by every reader: Dataset, verify, merge,
export, BlockDataset, train):

- `name_problem` (no filesystem access): a shard file, index file or tokenizer directory is a
  plain name: not empty, not `.`/`..`, no path separator (so no absolute path and no `..`
  component either), no control character; no two entries share a name.
- `check_file` / `check_tree` (lstat and realpath only, no byte read): a symlink is followed
  only when it resolves inside the directory (a shard or index file: inside the dataset
  directory; a tokenizer file: inside the tokenizer directory), and every entry is a regular
  file or a directory (a FIFO would hang a reader, a device would feed it forever).

The dataset directory itself may be a symlink or lie under one: teams link datasets into place.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from shards.errors import ShardFormatError

# More entries than any tokenizer has (a few files); a bound so a hostile tree cannot stall a reader.
MAX_TREE_ENTRIES = 10_000


class ConfinementError(ShardFormatError):
    """A manifest (or a tokenizer directory) names something outside its directory."""


def name_problem(name: object) -> str | None:
    """Why `name` is not a plain file name inside a directory; None when it is one."""
    if not isinstance(name, str):
        return f"is a JSON {type(name).__name__}, not a file name"
    if not name:
        return "is empty"
    if name.startswith(("/", "\\")):
        return "is an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "leaves the directory (..)"
    if "/" in name or "\\" in name:
        return "holds a path separator where a plain file name is expected"
    if name == ".":
        return "names the directory itself"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character"
    return None


def inside(target: str, root: str) -> bool:
    """True when the resolved path `target` is `root` or lies under it (both already realpath'd)."""
    return os.path.commonpath([target, root]) == root


def check_file(directory: Path, name: str, label: str) -> None:
    """Refuse DIR/name when it is a symlink leaving DIR or not a regular file. A missing file
    passes: the readers report it as missing, with their own message."""
    path = Path(directory) / name
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISLNK(st.st_mode):
        root, target = os.path.realpath(directory), os.path.realpath(path)
        if not inside(target, root):
            raise ConfinementError(
                f"{path}: {label} is a symlink to {target}, outside the dataset directory; refusing to read it "
                "(copy the file into the dataset instead of linking it)")
        try:
            st = os.stat(path)
        except OSError:
            return  # dangling: reported as missing by the reader
    if not stat.S_ISREG(st.st_mode):
        raise ConfinementError(f"{path}: {label} is not a regular file ({_kind(st.st_mode)}); refusing to read it")


def check_tree(top: Path, label: str, *, top_within: Path) -> None:
    """Refuse a directory tree that is a symlink resolving outside `top_within`, or that holds a
    symlink resolving outside the tree itself, or anything but regular files and directories."""
    top = Path(top)
    st = _lstat(top)
    if st is None:
        return
    real_root = os.path.realpath(top_within)
    real_top = os.path.realpath(top)
    if stat.S_ISLNK(st.st_mode) and not inside(real_top, real_root):
        raise ConfinementError(f"{top}: {label} is a symlink to {real_top}, outside {top_within}; refusing to read it "
                               "(copy the directory in instead of linking it)")
    if not os.path.isdir(real_top):
        return  # a missing or non-directory tokenizer is reported by whoever needs it
    seen = 0
    for base, dirs, files in os.walk(real_top, followlinks=False):
        for name in dirs + files:
            seen += 1
            if seen > MAX_TREE_ENTRIES:
                raise ConfinementError(f"{top}: {label} holds more than {MAX_TREE_ENTRIES:,} entries; refusing it")
            path = os.path.join(base, name)
            shown = top / os.path.relpath(path, real_top)
            entry = _lstat(Path(path))
            if entry is None:
                continue
            if stat.S_ISLNK(entry.st_mode):
                target = os.path.realpath(path)
                if not inside(target, real_top):
                    raise ConfinementError(f"{shown}: a symlink to {target}, outside {label} {top}; refusing to "
                                           "read it (copy the file in instead of linking it)")
            elif not (stat.S_ISREG(entry.st_mode) or stat.S_ISDIR(entry.st_mode)):
                raise ConfinementError(f"{shown}: not a regular file ({_kind(entry.st_mode)}) in {label} {top}; "
                                       "refusing to read it")


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ShardFormatError(f"{path}: cannot read ({e.strerror})") from None


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a plain file"
