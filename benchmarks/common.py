"""Helpers shared by the benchmark scripts: memory readings, a tokenizer, timing."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "quickstart" / "data" / "ja-libreoffice-help"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def rss(pid: int | None = None) -> dict[str, int]:
    """RSS split as the kernel reports it (bytes): anonymous (the process's own memory) and file-
    backed (page cache mapped in, which the kernel can drop)."""
    out = {}
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def private(pid: int | None = None) -> dict[str, int]:
    """Memory of the process itself (bytes), from /proc/PID/smaps_rollup: `private` pages no
    other process shares (a forked worker's copy-on-write pages of its parent are not counted
    until written), `anon` all its anonymous memory, `file` page cache it maps."""
    out = {}
    for line in Path(f"/proc/{pid or os.getpid()}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0]) * 1024
    return {"private": out.get("Private_Clean", 0) + out.get("Private_Dirty", 0), "anon": out.get("Anonymous", 0),
            "file": out.get("Rss", 0) - out.get("Anonymous", 0), "rss": out.get("Rss", 0), "pss": out.get("Pss", 0)}


def children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += children(p)
        except OSError:
            pass
    return out


def mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def rate(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:,.2f}{unit}"
    return f"{n:,.0f}"


def make_tokenizer(out: Path, vocab: int = 8000) -> Path:
    """The quickstart's tokenizer: SentencePiece unigram trained on the sample corpus."""
    from preprocess.tokenizer import train_sentencepiece

    lines = (CORPUS / "train.txt").read_text(encoding="utf-8").splitlines()
    train_sentencepiece(lines, vocab, out)
    return out


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        return False


def random_tokens(n: int, vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=n, dtype=np.int64)
