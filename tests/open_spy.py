"""A spy on every file and directory the code under test opens, through Python's audit hooks.

The hook sees builtins.open, io.open, os.open (numpy's np.load and memmap included) and
directory listings, wherever they are called from, so monkeypatching cannot be sidestepped
by a module that imported `open` early. It cannot see files a native library opens itself
(the Rust `tokenizers`, SentencePiece's C++): tests/test_tokenizer_guard.py covers those
under strace where it is available.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_EVENTS = {"open", "os.listdir", "os.scandir"}
_active: list[list[str]] = []
_installed = False


def _hook(event: str, args: tuple) -> None:
    if not _active or event not in _EVENTS or not args:
        return
    path = args[0]
    if isinstance(path, int) or path is None:
        return  # an already open descriptor: its opening was seen
    try:
        _active[-1].append(os.path.realpath(os.fsdecode(path)))
    except (TypeError, ValueError):
        pass


@contextmanager
def opened() -> Iterator[list[str]]:
    """Collect the resolved path of everything opened or listed inside the `with` block."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)  # hooks cannot be removed: it records only while a block is active
        _installed = True
    seen: list[str] = []
    _active.append(seen)
    try:
        yield seen
    finally:
        _active.remove(seen)


def outside(seen: list[str], scope: Path, allowed: list[Path]) -> list[str]:
    """The paths under `scope` (a test's tmp_path) that lie outside every `allowed` directory."""
    real_scope = os.path.realpath(scope)
    roots = [os.path.realpath(a) for a in allowed]

    def under(p: str, root: str) -> bool:
        return os.path.commonpath([p, root]) == root

    return sorted({p for p in seen if under(p, real_scope) and not any(under(p, r) for r in roots)})
