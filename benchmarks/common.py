"""Helpers shared by the benchmark scripts: memory readings, a tokenizer, timing."""

from __future__ import annotations

import json
import os
import platform
import subprocess
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


def make_tokenizer(out: Path, vocab: int = 8000, text: Path | None = None, sample_bytes: int | None = None,
                   model_type: str = "unigram") -> Path:
    """A SentencePiece unigram tokenizer trained as `preprocess --vocab-size` trains it: on the
    sample corpus (the quickstart's tokenizer), or on the first `sample_bytes` of `text`."""
    from preprocess.tokenizer import train_sentencepiece

    if text is None:
        lines = (CORPUS / "train.txt").read_text(encoding="utf-8").splitlines()
    else:
        with open(text, encoding="utf-8") as f:
            lines = f.read(sample_bytes or -1).splitlines()[:-1]
    train_sentencepiece(lines, vocab, out, model_type=model_type)
    return out


# Runs in every Python process of a benchmarked command (main and spawned workers) when its
# directory is on PYTHONPATH: the first batch a preprocess engine encodes records the wall time
# and the CPU seconds of the whole process tree so far.
_HOOK = r"""
import os, sys, time
_out = os.environ.get("BENCH_FIRST_TOKEN")
if _out:
    os.environ.setdefault("BENCH_ROOT_PID", str(os.getpid()))
    import importlib.abc, importlib.machinery, json

    def _cpu(pid):
        ticks = os.sysconf("SC_CLK_TCK")
        total, todo = 0.0, [pid]
        while todo:
            p = todo.pop()
            try:
                fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15]) / ticks  # utime stime cutime cstime
                for task in os.listdir(f"/proc/{p}/task"):
                    todo += [int(c) for c in open(f"/proc/{p}/task/{task}/children").read().split()]
            except OSError:
                pass
        return total

    def _record():
        try:
            fd = os.open(_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return
        root = int(os.environ["BENCH_ROOT_PID"])
        os.write(fd, json.dumps({"wall": time.time(), "cpu": _cpu(root)}).encode())
        os.close(fd)

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "preprocess.engines":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                make = module.make_encoder

                def make_encoder(engine_spec):
                    encode = make(engine_spec)

                    def first(texts):
                        ids = encode(texts)
                        if any(ids):
                            _record()
                        return ids
                    return first
                module.make_encoder = make_encoder
            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Finder())
"""


def first_token_hook(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_HOOK)
    return directory


def run_timed(cmd: list[str], hook: Path, root: Path = ROOT) -> dict[str, float]:
    """Run `cmd` (a Python command line) with the first-token hook: wall and CPU seconds (the
    process and all its children) to exit, and to the first encoded token (NaN when none)."""
    mark = hook / f"first-{time.monotonic_ns()}.json"
    env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{root}", "BENCH_FIRST_TOKEN": str(mark)}
    env.pop("BENCH_ROOT_PID", None)
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, cwd=root)  # `-m` looks in cwd first
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd)} failed")
    first = json.loads(mark.read_text()) if mark.exists() else {"wall": float("nan"), "cpu": float("nan")}
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "first_wall": first["wall"] - t0,
            "first_cpu": first["cpu"]}


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        return False


def random_tokens(n: int, vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=n, dtype=np.int64)
