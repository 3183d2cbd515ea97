"""The output directory's lifecycle: fresh, resumed after a crash, complete, or refused."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from preprocess.errors import UsageError
from shards import MANIFEST
from shards.lock import LOCK_NAME, DirectoryLock
from shards.manifest import write_json_atomic
from shards.writer import remove_dataset

WORK_DIR = ".preprocess"  # journal and tokenizer of a run in progress; removed at the end
_STATE = "state.json"
# What the journal holds, as a number: a journal of another format (an interrupted run of an
# older preprocess) is refused rather than misread. 2: the engine entry records its lowest score.
FORMAT = 2


class Journal:
    """Where an unfinished run records how far it got (atomically, so a kill never corrupts it)."""

    def __init__(self, out: Path):
        self.dir = out / WORK_DIR
        self.path = self.dir / _STATE

    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # written atomically, so this is not ours; treated as no journal

    def save(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, state)

    def remove(self) -> None:
        # The state first: a kill halfway through the rmtree must not leave a journal that
        # points at a tokenizer directory that is already half gone.
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def lock_output(out: Path) -> DirectoryLock:
    """Create `out` if needed and take its writer lock (held until the lock is released)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create the output directory ({e.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the output directory is not writable")
    return DirectoryLock(out, "preprocess").acquire()


def prepare(out: Path, datasets: list[Path], identity: str, settings: dict[str, Any],
            inputs: list[dict[str, Any]], overwrite: bool) -> tuple[str, dict[str, Any] | None]:
    """Decide what to do with `out` (created and locked by `lock_output`): ("fresh", None),
    ("restart", None) (a run killed before its first journal entry, cleared), ("resume", state)
    or ("complete", None)."""
    journal = Journal(out)
    state = journal.load()
    if state is not None:
        if state.get("format") != FORMAT and not overwrite:
            raise UsageError(f"--out {out}: holds an interrupted run of another preprocess version, which this one "
                             "cannot resume; pass --overwrite to start over")
        if state.get("identity") == identity and not overwrite:
            for d in datasets:  # resuming: nothing may look complete until the end
                (d / MANIFEST).unlink(missing_ok=True)
            return "resume", state
        if not overwrite:
            raise UsageError(
                f"--out {out}: holds an interrupted run of a different command (other inputs or settings); "
                "re-run that command to finish it, or pass --overwrite to start over")
        clear(out)
        return "fresh", None
    if all((d / MANIFEST).exists() for d in datasets):
        if not overwrite and all(_same(d, settings, inputs) for d in datasets):
            return "complete", None
        if not overwrite:
            raise UsageError(f"--out {out}: already holds a dataset made from other inputs or settings; "
                             "choose another --out or pass --overwrite")
        clear(out)
        return "fresh", None
    held = [p.name for p in out.iterdir() if p.name != LOCK_NAME]  # the lock is ours
    if held == [WORK_DIR]:
        # A run that failed or was killed before its first journal entry: nothing worth keeping.
        clear(out)
        return "restart", None
    if held:
        if not overwrite:
            raise UsageError(f"--out {out}: not empty and holds no preprocess run; choose a new or empty "
                             "directory, or pass --overwrite")
        clear(out)
    return "fresh", None


def _same(directory: Path, settings: dict[str, Any], inputs: list[dict[str, Any]]) -> bool:
    try:
        m = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    recorded = [[i.get("name"), i.get("bytes")] for i in m.get("inputs", [])]
    wanted = [[i["name"], i["bytes"]] for i in inputs]
    ours = {k: v for k, v in m.get("settings", {}).items() if k != "split"}
    return ours == settings and recorded == wanted


def clear(out: Path) -> None:
    """Remove what preprocess writes in `out` (datasets in out, out/train, out/valid, and the
    work directory) and nothing else: a user's own files there stay."""
    for split in ("train", "valid"):  # manifests first: nothing may look complete meanwhile
        (out / split / MANIFEST).unlink(missing_ok=True)
    remove_dataset(out)
    for split in ("train", "valid"):
        d = out / split
        if d.is_dir() and not d.is_symlink():
            remove_dataset(d)
            if not any(d.iterdir()):
                d.rmdir()
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)


def refuse_inputs_inside(out: Path, paths: list[Path]) -> None:
    """--overwrite deletes in --out: refuse when an input or the tokenizer lies in there."""
    root = out.resolve()
    for p in paths:
        if p.resolve() == root or root in p.resolve().parents:
            raise UsageError(f"--out {out} contains the input {p}; with --overwrite it would be deleted. "
                             "Choose an output directory outside the inputs")
