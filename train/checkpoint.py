"""Checkpoints and the released model: written atomically, marked complete last, checked on load.

RUN/checkpoints/step_00000100/ holds state.pt (weights, optimizer, grad scaler, each process's
RNG and loss window) and meta.json (step, tokens, the global batch's layout, the datasets'
fingerprints, the config, state.pt's size). Each is written as a temp directory, renamed into
place, then marked with a COMPLETE file; only marked checkpoints are loaded, so a kill -9 at
any moment leaves the previous one usable. RUN/final is written the same way. Loading never
runs code: meta.json is plain JSON, state.pt is read with torch.load(weights_only=True),
memory-mapped so that every process of a node shares one copy in the page cache.

This module imports torch only inside the functions that save or load tensors, so the checks
on meta.json run before torch is imported (train.preflight).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from shards.errors import ShardFormatError
from shards.manifest import fsync_dir
from shards.space import is_no_space, no_space_error

CHECKPOINTS = "checkpoints"
FINAL = "final"
MARKER = "COMPLETE"
STATE, META = "state.pt", "meta.json"
FORMAT, VERSION = "shardtrain-checkpoint", 2
_NAME = re.compile(r"^step_(\d{8})$")


class CheckpointError(ShardFormatError):
    """A checkpoint marked complete cannot be used (exit 1; nothing is deleted)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A complete checkpoint whose meta.json passed the checks."""

    path: Path
    meta: dict[str, Any]

    @property
    def step(self) -> int:
        return self.meta["step"]

    @property
    def layout(self) -> tuple[int, int, int]:
        """(world_size, batch_size, grad_accum) of the run that wrote it."""
        lay = self.meta["layout"]
        return lay["world_size"], lay["batch_size"], lay["grad_accum"]


def step_name(step: int) -> str:
    return f"step_{step:08d}"


class Checkpointer:
    """Save, find, check, load and prune a run's checkpoints, and write its final/ model."""

    def __init__(self, run_dir: str | os.PathLike[str], keep: int = 3):
        self.run_dir = Path(run_dir)
        self.root = self.run_dir / CHECKPOINTS
        self.keep = keep

    # -- finding ------------------------------------------------------------------------------
    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if _NAME.match(p.name) and (p / MARKER).is_file()]
        return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint, checked (CheckpointError names it and the way back)."""
        done = self.complete()
        if not done:
            return None
        try:
            return read(done[-1])
        except CheckpointError as e:
            raise CheckpointError(f"{e}; {self._fallback(done)}") from None

    def _fallback(self, done: list[Path]) -> str:
        broken = done[-1]
        aside = broken.with_name("broken_" + broken.name)
        move = f"mv {broken} {aside}"
        if len(done) < 2:
            return f"no older complete checkpoint exists; move it aside ({move}) and start the run again"
        return (f"the previous complete checkpoint is {done[-2].name}: to resume from it, move the broken one "
                f"aside ({move}) and run --resume again (nothing was deleted)")

    # -- saving -------------------------------------------------------------------------------
    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> Path:
        """Write checkpoint `step` (state tensors + meta), mark it complete, prune old ones."""
        import torch

        def fill(tmp: Path) -> None:
            torch.save(state, tmp / STATE)
            full = {"format": FORMAT, "version": VERSION, **meta, "step": step,
                    "files": {STATE: (tmp / STATE).stat().st_size},
                    "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (tmp / META).write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")

        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / step_name(step)
        good = self.complete()
        _write_dir(self.root / f".{step_name(step)}.tmp", fill, tensor_bytes(state), lambda: (
            f"the checkpoint of step {step} was not kept; the newest complete checkpoint is "
            f"{good[-1] if good else 'none'}: free space and run `train --out {self.run_dir} --resume`"))
        if final.exists():  # the same step saved again (e.g. a stop right after a periodic save)
            remove(final)
        os.replace(self.root / f".{step_name(step)}.tmp", final)
        fsync_dir(self.root)
        mark_complete(final, f"{step}\n")
        self.prune()
        return final

    def prune(self) -> None:
        """Keep the newest `keep` complete checkpoints; remove older ones and stale temp dirs."""
        done = self.complete()
        for old in done[:-self.keep]:
            remove(old)
        newest = int(_NAME.match(done[-1].name).group(1)) if done else -1
        for p in self.root.iterdir():
            m = _NAME.match(p.name)
            if p.name.startswith(".step_") or (m and not (p / MARKER).exists() and int(m.group(1)) < newest):
                shutil.rmtree(p, ignore_errors=True)

    # -- loading ------------------------------------------------------------------------------
    def load_state(self, ckpt: Checkpoint) -> dict[str, Any]:
        try:
            return load_state(ckpt.path)
        except CheckpointError as e:
            raise CheckpointError(f"{e}; {self._fallback([p for p in self.complete() if p <= ckpt.path])}") from None

    # -- the released model -------------------------------------------------------------------
    @property
    def final(self) -> Path:
        return self.run_dir / FINAL

    def final_complete(self) -> bool:
        return (self.final / MARKER).is_file()

    def write_final(self, fill: Callable[[Path], None], step: int, need: int = 0) -> Path:
        """`fill(tmp_dir)` writes the model; then it is renamed to RUN/final and marked complete.

        An older final/ (complete or not) is moved aside first and removed only once the new
        one is in place, so a kill at any moment leaves either no final/, an unmarked one (which
        --resume rewrites) or a complete one.
        """
        tmp = self.run_dir / f".{FINAL}.tmp"
        old = self.run_dir / f".{FINAL}.old"
        _write_dir(tmp, fill, need, lambda: (
            f"{self.final} was not written; free space and run `train --out {self.run_dir} --resume`, which "
            "writes it from the last checkpoint"))
        shutil.rmtree(old, ignore_errors=True)
        if self.final.exists():
            (self.final / MARKER).unlink(missing_ok=True)  # unmarked first: never "complete" half gone
            os.replace(self.final, old)
        os.replace(tmp, self.final)
        fsync_dir(self.run_dir)
        mark_complete(self.final, f"{step}\n")
        shutil.rmtree(old, ignore_errors=True)
        return self.final


def _write_dir(tmp: Path, fill: Callable[[Path], None], need: int, after_full: Callable[[], str]) -> None:
    """Fill a fresh temp directory, give it the umask's modes, fsync it; on failure remove it,
    and say a full disk in one line (the bytes needed, then `after_full()`)."""
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        fill(tmp)
        share_like_umask(tmp)
        sync_tree(tmp)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written directory only takes space
        if is_no_space(e, tmp.parent, need):
            raise no_space_error(tmp, needed=need, after=after_full()) from e
        raise


def remove(directory: Path) -> None:
    """Delete a checkpoint or model directory, its COMPLETE marker first: a kill halfway through
    leaves an unmarked directory (which is never loaded and is pruned), not a "complete" one with
    files missing."""
    (directory / MARKER).unlink(missing_ok=True)
    fsync_dir(directory)
    shutil.rmtree(directory, ignore_errors=True)


def read(path: Path) -> Checkpoint:
    """Check a complete checkpoint's meta.json (and state.pt's size) without loading tensors."""
    where = str(path)
    if not (path / MARKER).is_file():
        raise CheckpointError(f"{where}: not marked {MARKER} (still being written, or its writer was killed)")
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{where}: marked complete but has no {META}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{where}: {META} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: {META} is not a JSON object")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{where}: not a {FORMAT} v{VERSION} checkpoint (format {meta.get('format')!r}, "
                              f"version {meta.get('version')!r}); it was written by another version of shardtrain")
    _need_ints(meta, ("step", "tokens_seen"), where)
    lay = meta.get("layout")
    if not isinstance(lay, dict):
        raise CheckpointError(f"{where}: {META} has no layout")
    _need_ints(lay, ("world_size", "batch_size", "grad_accum"), where, positive=True)
    fps = meta.get("fingerprints")
    if not isinstance(fps, dict) or not isinstance(fps.get("data"), list) or \
            not all(isinstance(f, str) for f in fps["data"]) or not isinstance(fps.get("valid"), (str, type(None))):
        raise CheckpointError(f"{where}: {META} has no valid dataset fingerprints")
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{where}: {META} has no config")
    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("config"), dict):
        raise CheckpointError(f"{where}: {META} has no model shape")
    _need_ints(model, ("n_positions",), where, positive=True)
    expected = int(_NAME.match(path.name).group(1)) if _NAME.match(path.name) else None
    if expected is not None and meta["step"] != expected:
        raise CheckpointError(f"{where}: {META} says step {meta['step']}, its directory name says {expected}")
    size = (meta.get("files") or {}).get(STATE)
    state = path / STATE
    if not state.is_file():
        raise CheckpointError(f"{where}: {STATE} is missing")
    if not isinstance(size, int) or state.stat().st_size != size:
        raise CheckpointError(f"{where}: {STATE} has {state.stat().st_size:,} bytes, {META} says {size!r} "
                              "(truncated or replaced)")
    return Checkpoint(path, meta)


def _need_ints(d: dict, keys: tuple[str, ...], where: str, positive: bool = False) -> None:
    for k in keys:
        v = d.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < (1 if positive else 0):
            raise CheckpointError(f"{where}: {META} field {k!r} is {v!r}, not a {'positive' if positive else 'non-negative'} "
                                  "integer")


def load_state(path: Path) -> dict[str, Any]:
    """state.pt's tensors, memory-mapped (shared by every process reading it), never unpickling code."""
    import pickle

    import torch

    file = path / STATE
    try:
        with zipfile.ZipFile(file):  # a truncated file has no central directory: say so, not a torch trace
            pass
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: {STATE} is unreadable ({e})") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: {STATE} holds more than tensors and plain data; refusing to unpickle it "
                              f"(weights_only: {first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: {STATE} is unreadable ({str(e).strip().splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "ranks"} <= set(state):
        raise CheckpointError(f"{path}: {STATE} lacks the model, optimizer or per-process state")
    return state


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a nested dict/list (what torch.save will write, roughly)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def mark_complete(directory: Path, text: str) -> None:
    marker = directory / MARKER
    marker.write_text(text, encoding="utf-8")
    _fsync(marker)
    fsync_dir(directory)


def sync_tree(directory: Path) -> None:
    for p in directory.rglob("*"):
        if p.is_file():
            _fsync(p)
    fsync_dir(directory)


def share_like_umask(directory: Path) -> None:
    """Give every file the mode the user's umask allows (safetensors writes 0600), so another team
    on shared storage can read the released model as it can the rest of the run."""
    mask = os.umask(0o022)
    os.umask(mask)
    for p in [directory, *directory.rglob("*")]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
