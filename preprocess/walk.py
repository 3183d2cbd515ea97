"""Walking input directories safely: symbolic links followed without looping, only regular files
read, and `datasets.Dataset.save_to_disk` directories taken in the order their state.json gives.

Nothing here opens an input: `os.stat` never blocks, where opening a FIFO waits for a writer
and reading /dev/zero never ends.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from preprocess.errors import InputError, UsageError

DATASETS_STATE = "state.json"  # save_to_disk: {"_data_files": [{"filename": ...}, ...], ...}
DATASETS_META = ("state.json", "dataset_info.json")
DATASET_DICT = "dataset_dict.json"  # DatasetDict.save_to_disk: {"splits": [...]}, one directory per split
_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """What a non-regular, non-directory file is, in words."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def refuse_special(name: str, mode: int) -> None:
    """One line for an input that is not a regular file, and why it is not read."""
    kind = kind_of(mode)
    if stat.S_ISFIFO(mode):
        raise UsageError(f"{name}: {kind}, not a regular file; preprocess reads every input more than once "
                         "(tokenizer check, --part, resume after a kill) and a pipe cannot be read twice: "
                         "write the stream to a file first")
    raise UsageError(f"{name}: {kind}, not a regular file; preprocess reads regular files only")


def stat_input(path: Path, name: str) -> os.stat_result:
    """os.stat that follows links, with one line for a missing target or a link loop."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(f"{name}: a symbolic link to a missing file (an incomplete download or copy?)") from None
        raise InputError(f"{name}: no such file or directory") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{name}: a symbolic link loop; remove the link or name the files you mean") from None
        raise InputError(f"{name}: cannot read ({e.strerror})") from None


def walk(root: Path, name: str, wanted: Callable[[Path], bool]) -> tuple[list[tuple[Path, str]], int]:
    """Every regular file under `root` that `wanted` accepts, as (path, name) sorted by name
    (save_to_disk directories in their own order), and the count of other files ignored.

    Links to directories are followed once each; a link back to a directory above it is a loop
    and refused, as are special files (FIFOs, devices, sockets) and dangling links that `wanted`
    accepts by name.
    """
    found: list[tuple[Path, str]] = []
    ordered: list[list[str]] = []  # per save_to_disk directory: its files' names in state.json order
    ignored = 0
    visited: set[tuple[int, int]] = set()
    stack = [(root, name, ())]
    while stack:
        directory, dname, above = stack.pop()
        st = stat_input(directory, dname)
        key = (st.st_dev, st.st_ino)
        if key in above:
            raise InputError(f"{dname}: a symbolic link loop (it leads back to a directory above it); "
                             "remove the link or name the directories you mean")
        if key in visited:
            continue  # reached again through another link: its files are listed already
        visited.add(key)
        try:
            entries = sorted(os.listdir(directory))
        except OSError as e:
            raise InputError(f"{dname}: cannot list directory ({e.strerror})") from None
        order = _datasets_order(directory, dname, entries)
        if order is not None:
            ordered.append([(Path(dname) / n).as_posix() for n in order])
        for entry in entries:
            path, ename = directory / entry, (Path(dname) / entry).as_posix()
            try:
                mode = os.stat(path).st_mode
            except OSError as e:
                if e.errno == errno.ELOOP or wanted(path):
                    stat_input(path, ename)  # raises the one line for this link
                ignored += 1  # a dangling link that names no input (a stale lock, say)
                continue
            if stat.S_ISDIR(mode):
                stack.append((path, ename, (*above, key)))
            elif order is not None and entry in DATASETS_META:
                continue  # the save_to_disk directory's own description, read above
            elif not wanted(path) or (order is not None and entry not in order):
                ignored += 1
            elif not stat.S_ISREG(mode):
                refuse_special(ename, mode)
            else:
                found.append((path, ename))
    found.sort(key=lambda pn: pn[1])
    for names in ordered:  # the same positions, filled in state.json's order
        listed = set(names)
        slots = [i for i, (_, n) in enumerate(found) if n in listed]
        by_name = {found[i][1]: found[i] for i in slots}
        for i, n in zip(slots, [n for n in names if n in by_name], strict=True):
            found[i] = by_name[n]
    return found, ignored


def _datasets_order(directory: Path, dname: str, entries: list[str]) -> list[str] | None:
    """The data files of a save_to_disk directory in state.json's order; None for other
    directories. A DatasetDict (one directory per split) is refused: taking every split into
    one dataset would mix test data into training."""
    if DATASET_DICT in entries:
        try:
            splits = _read_meta(directory, dname, DATASET_DICT).get("splits")
        except AttributeError:
            splits = None
        if isinstance(splits, list) and splits:
            raise UsageError(f"{dname}: a Hugging Face DatasetDict (splits: {', '.join(map(str, splits))}); "
                             f"pass the split you want, e.g. {dname}/{splits[0]}")
    if DATASETS_STATE not in entries:
        return None
    try:
        state = _read_meta(directory, dname, DATASETS_STATE)
        files = [d["filename"] for d in state["_data_files"]]
    except (KeyError, TypeError):
        return None  # a state.json of something else
    for n in files:
        if not isinstance(n, str) or not n or "/" in n or "\\" in n or n in (".", ".."):
            raise InputError(f"{dname}/{DATASETS_STATE}: names {n!r} as a data file; only plain file names "
                             "inside the directory are read")
        if files.count(n) > 1:
            raise InputError(f"{dname}/{DATASETS_STATE}: lists {n} twice")
        if n not in entries:
            raise InputError(f"{dname}/{DATASETS_STATE}: lists {n}, which is missing (an incomplete copy?)")
    return files


def _read_meta(directory: Path, dname: str, name: str) -> object:
    """The JSON of a save_to_disk description file, or None when there is none to read (missing,
    a dangling link, a directory, not JSON: then this is not a save_to_disk directory). Opened
    without blocking: a FIFO or device under that name is refused with one line, never read."""
    try:
        fd = os.open(directory / name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            if not stat.S_ISDIR(mode):
                refuse_special(f"{dname}/{name}", mode)
            return None
        with open(fd, "rb", closefd=False) as fh:  # O_NONBLOCK does nothing for regular files
            data = fh.read()
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
