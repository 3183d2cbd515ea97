"""`shards verify --tokenizer-roundtrip`: documents/s and tokens/s against the naive loop, and
peak memory on a dataset 1x and Nx the size.

    python benchmarks/bench_roundtrip.py [--copies 4]

One run, one machine, so the ratio compares like with like:
  naive   for each document: tok.decode(ids), then tok.encode(text, add_special_tokens=False)
          (what a receiving team writes first), over the same documents, in this process
  ours    shards.roundtrip.roundtrip(): one batched decode and one batched encode call per ~262k
          tokens (for a plain tokenizers backend: decode_batch and encode_batch_fast in Rust)
Memory: the peak RSS (VmHWM) of a fresh process running roundtrip() on the 1x dataset and on the
Nx one; flat means the work is bounded by the batch, not by the dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import CORPUS, machine, make_tokenizer, mb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _dataset(tmp: Path, tok: Path, copies: int) -> Path:
    text = (CORPUS / "train.txt").read_text(encoding="utf-8")
    corpus = tmp / f"corpus{copies}.txt"
    # Copies with a marker per copy, so documents stay distinct (no cache can help the loop).
    corpus.write_text("".join(f"{i}: {line}\n" for i in range(copies) for line in text.splitlines() if line.strip()),
                      encoding="utf-8")
    out = tmp / f"ds{copies}"
    subprocess.run([sys.executable, "-m", "preprocess", str(corpus), "--tokenizer", str(tok), "--out", str(out),
                    "--workers", "1", "--quiet"], check=True, cwd=ROOT)
    return out


def _naive(path: Path) -> tuple[float, int]:
    from shards import Dataset
    from shards.tokenizer_guard import load_tokenizer

    ds = Dataset(path)
    tok = load_tokenizer(ds.tokenizer_dir, "tok")
    t0, differ = time.perf_counter(), 0
    for d in range(ds.num_documents):
        ids = ds.document(d).tolist()[:-1]
        text = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        differ += tok.encode(text, add_special_tokens=False) != ids
    return time.perf_counter() - t0, differ


def _ours(path: Path) -> tuple[float, int]:
    from shards.roundtrip import roundtrip

    t0 = time.perf_counter()
    report = roundtrip(path)
    return time.perf_counter() - t0, report.differ


def _peak(path: Path) -> int:
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from shards.roundtrip import roundtrip; roundtrip(sys.argv[1]);"
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    r = subprocess.run([sys.executable, "-c", code, str(path), str(ROOT)], capture_output=True, text=True, check=True)
    return int(r.stdout.strip()) * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=4, help="the larger dataset is this many copies of the corpus")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok = make_tokenizer(tmp / "tok")
        small, big = _dataset(tmp, tok, 1), _dataset(tmp, tok, args.copies)
        m = json.loads((small / "manifest.json").read_text())
        naive_s, naive_diff = _naive(small)
        ours_s, ours_diff = _ours(small)
        docs, tokens = m["num_documents"], m["num_tokens"]
        print(f"dataset: {docs:,} documents, {tokens:,} tokens (8k unigram tokenizer)")
        print(f"naive loop     {naive_s:7.2f} s  {docs / naive_s:9,.0f} docs/s  {tokens / naive_s / 1e6:6.2f}M tok/s"
              f"  differ={naive_diff}")
        print(f"roundtrip()    {ours_s:7.2f} s  {docs / ours_s:9,.0f} docs/s  {tokens / ours_s / 1e6:6.2f}M tok/s"
              f"  differ={ours_diff}")
        print(f"speed-up: {naive_s / ours_s:.2f}x")
        big_tokens = json.loads((big / "manifest.json").read_text())["num_tokens"]
        print(f"peak RSS: {mb(_peak(small))} on {tokens:,} tokens, {mb(_peak(big))} on {big_tokens:,} tokens")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
