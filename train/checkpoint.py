"""Checkpoints: written atomically, marked complete last, the newest `keep` kept.

RUN/checkpoints/step_00000100/ holds state.pt and meta.json. It is written as a temp
directory, renamed into place, then marked with a COMPLETE file; only marked checkpoints are
ever loaded, so a kill -9 at any moment leaves the previous one usable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from shards.manifest import fsync_dir

CHECKPOINTS = "checkpoints"
MARKER = "COMPLETE"
_NAME = re.compile(r"^step_(\d{8})$")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def save(run_dir: Path, step: int, state: dict[str, Any], meta: dict[str, Any], keep: int) -> Path:
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".step_{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(state, tmp / "state.pt")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for f in tmp.iterdir():
        _fsync(f)
    if final.exists():  # the same step saved again (e.g. a stop right after a periodic save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)
    marker = final / MARKER
    marker.write_text(f"{step}\n", encoding="utf-8")
    _fsync(marker)
    fsync_dir(final)
    prune(root, keep)
    return final


def complete(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / MARKER).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest(run_dir: Path) -> Path | None:
    found = complete(run_dir)
    return found[-1] if found else None


def prune(root: Path, keep: int) -> None:
    """Keep the newest `keep` complete checkpoints; remove older ones and stale temp dirs."""
    done = complete(root.parent)
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    newest = int(_NAME.match(done[-1].name).group(1)) if done else -1
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if p.name.startswith(".step_") or (m and not (p / MARKER).exists() and int(m.group(1)) < newest):
            shutil.rmtree(p, ignore_errors=True)


def load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, meta) of a checkpoint directory; tensors are loaded onto the CPU."""
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    return state, meta
