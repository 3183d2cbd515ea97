"""preprocess: tokens/s against the raw tokenizer, scaling with workers, and memory vs corpus size.

    python benchmarks/bench_preprocess.py [--mb 64] [--workers N]

In one run on one machine:
  raw        the same SentencePiece model encoding the same lines in this process, one thread,
             in the batches the pipeline uses (text already in memory: the tokenizer's own cost)
  w1, wN     `preprocess --workers 1` and `--workers N` on that text as a file (reading,
             encoding in worker processes, ordered shard writing, hashing)
Rates use the encoding phase (first batch to last shard written); whole-command times, which
add start-up (imports, the tokenizer check, spawning workers), are printed beside them.
Memory: peak memory (PSS) of the whole process tree of a `preprocess` subprocess on a corpus
of 1x and 10x the size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import CORPUS, machine, make_tokenizer, mb, private, rate, tree


def corpus(path: Path, megabytes: float) -> int:
    """The sample corpus repeated to about `megabytes` MB; returns its byte size."""
    text = (CORPUS / "train.txt").read_bytes()
    reps = max(1, int(megabytes * 1e6 // len(text)) + 1)
    with open(path, "wb") as f:
        for _ in range(reps):
            f.write(text)
    return path.stat().st_size


def raw_rate(text: Path, tok_dir: Path) -> tuple[float, int]:
    """(tokens/s, tokens) of SentencePiece alone, one thread, in batches of lines as large as the
    pipeline's largest blocks."""
    import sentencepiece as spm

    from preprocess.encoding import BATCH_BYTES

    sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
    lines = text.read_text(encoding="utf-8").splitlines()
    batches, cur, size = [], [], 0
    for line in lines:
        cur.append(line)
        size += len(line) * 3
        if size >= BATCH_BYTES:
            batches.append(cur)
            cur, size = [], 0
    batches.append(cur)
    n, t0 = 0, time.perf_counter()
    for b in batches:
        n += sum(map(len, sp.encode(b, num_threads=1)))
    return n / (time.perf_counter() - t0), n


def pipeline_rate(text: Path, tok_dir: Path, out: Path, workers: int) -> tuple[float, float, int]:
    """(tokens/s of the encoding phase, whole seconds, tokens) of one in-process preprocess run."""
    from preprocess.config import PreprocessConfig
    from preprocess.pipeline import run

    cfg = PreprocessConfig(inputs=(str(text),), out=out, tokenizer=str(tok_dir), workers=workers, quiet=True,
                           overwrite=True)
    t0 = time.perf_counter()
    summary = run(cfg, say=lambda s: None)
    whole = time.perf_counter() - t0
    tokens = sum(m.num_tokens for m in summary.manifests.values())
    return summary.encode_rate, whole, tokens


def peak_memory(text: Path, tok_dir: Path, out: Path, workers: int) -> tuple[int, int]:
    """(peak total PSS of the process tree, peak RSS of its largest process) in bytes.

    PSS splits shared pages between the processes sharing them, so a child caught between fork
    and exec (a copy of its parent for a moment) is not counted twice, as summed RSS would.
    """
    cmd = [sys.executable, "-m", "preprocess", str(text), "--tokenizer", str(tok_dir), "--out", str(out),
           "--workers", str(workers), "-q", "--overwrite"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, env=env)
    total = largest = 0
    while proc.poll() is None:
        pss, sizes = [], []
        for pid in tree(proc.pid):
            try:
                mem = private(pid)
                pss.append(mem["pss"])
                sizes.append(mem["rss"])
            except (OSError, KeyError):
                pass
        total, largest = max(total, sum(pss)), max([largest, *sizes])
        time.sleep(0.05)
    if proc.returncode:
        raise SystemExit(f"preprocess failed: {proc.returncode}")
    return total, largest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=64, help="corpus size for the rates (MB)")
    ap.add_argument("--memory-mb", type=float, default=20, help="the 1x corpus of the memory check (MB)")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-pre-") as tmp:
        root = Path(tmp)
        tok = make_tokenizer(root / "tok")
        text = root / "corpus.txt"
        size = corpus(text, args.mb)
        text.read_bytes()  # page cache warm for everyone
        print(f"\n[1] tokens/s on {size / 1e6:.0f} MB of Japanese text (the sample corpus repeated), "
              f"SentencePiece unigram, vocab 8000")
        raw, n_raw = raw_rate(text, tok)
        print(f"  raw tokenizer, 1 process, 1 thread: {rate(raw)} tokens/s ({n_raw:,} tokens)")
        for w in sorted({1, args.workers}):
            r, whole, n = pipeline_rate(text, tok, root / f"out{w}", w)
            assert n == n_raw + text.read_text(encoding="utf-8").count("\n"), "token counts differ (EOS per line)"
            goal = 0.85 * w * raw
            print(f"  preprocess --workers {w}: {rate(r)} tokens/s = {r / raw:.2f} x raw "
                  f"(goal >= {0.85 * w:.2f} x: {'met' if r >= goal else 'NOT met'}); whole command {whole:.1f} s, "
                  f"{rate(n / whole)} tokens/s with start-up")
        print(f"\n[2] peak memory, --workers {args.workers}")
        for factor in (1, 10):
            t = root / f"mem{factor}.txt"
            s = corpus(t, args.memory_mb * factor)
            total, largest = peak_memory(t, tok, root / f"mem{factor}", args.workers)
            print(f"  {s / 1e6:6.0f} MB corpus: peak memory of all processes (PSS) {mb(total)}, "
                  f"largest process (RSS) {mb(largest)}")
            t.unlink()


if __name__ == "__main__":
    main()
