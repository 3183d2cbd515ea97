"""preprocess reading costs that must stay linear or flat: a long JSON line, and CRLF text.

    python benchmarks/bench_reading.py [--line-mb 16,64,256] [--text-mb 8]

long line  `read_blocks` (the main process's cutting into blocks) over a .jsonl file holding one
           line of N MB (a JSON line is never cut before parsing): seconds per MB for each N, and
           the largest N's per-MB time against the smallest's (1.0 is linear; the buffer used to
           be searched again from its start after every read, quadratic in the line's length)
line ends  what a worker does to a block before tokenizing it (`worker._fast`, else the rules
           line by line), ms per MiB on sample-corpus text in 1 MiB blocks (the pipeline's
           largest) with LF line ends and the same text with CRLF line ends (the ratio is the
           cost of CRLF), with --valid-fraction 0 and 0.1
Each figure is the best of three passes, in this process; the machine and load are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import CORPUS, machine  # noqa: E402


def best(fn, passes: int = 3) -> float:
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def long_line(tmp: Path, megabytes: list[int]) -> None:
    from preprocess.blocks import read_blocks
    from preprocess.inputs import InputFile, Unit

    text = (CORPUS / "train.txt").read_text(encoding="utf-8").replace("\n", " ").replace('"', "'")
    per_mb = {}
    for n in megabytes:
        path = tmp / f"line{n}.jsonl"
        body = text.encode()
        reps = n * 2**20 // len(body) + 1
        with open(path, "wb") as f:
            f.write(b'{"text": "')
            for _ in range(reps):
                f.write(body)
            f.write(b'"}\n')
        f_in = InputFile(path, path.name, path.stat().st_size, "jsonl", None)

        def read():
            for _ in read_blocks([f_in], [Unit(0, 0, None)], 0, max_doc_bytes=1 << 20, block_bytes=1 << 20):
                pass

        seconds = best(read, passes=1 if n >= 256 else 3)
        per_mb[n] = seconds / (f_in.size / 1e6)
        print(f"  one {f_in.size / 1e6:,.0f} MB JSON line: {seconds:.2f} s ({per_mb[n] * 1e3:.1f} ms per MB)")
        path.unlink()
    lo, hi = min(per_mb), max(per_mb)
    print(f"  per-MB time, {hi} MB line / {lo} MB line: {per_mb[hi] / per_mb[lo]:.2f} (1.0 = linear)")


def line_ends(text_mb: int) -> None:
    from preprocess import worker
    from preprocess.blocks import Block, count_lines
    from preprocess.inputs import InputFile

    corpus = (CORPUS / "train.txt").read_bytes()
    text = corpus * (text_mb * 2**20 // len(corpus) + 1)
    lf_blocks, start = [], 0
    while len(lf_blocks) < text_mb:  # 1 MiB blocks of whole lines
        end = text.rindex(b"\n", start, start + 2**20) + 1
        lf_blocks.append(text[start:end])
        start = end
    mib = sum(map(len, lf_blocks)) / 2**20
    f = InputFile(Path("x.txt"), "x.txt", 2 * len(text), "txt", None)
    for fraction in (0.0, 0.1):
        s = worker.Settings([f], "text", "replace", 1 << 20, None, "<u2", 1000, fraction)
        costs = {}
        for name, datas in (("LF", lf_blocks), ("CRLF", [b.replace(b"\n", b"\r\n") for b in lf_blocks])):
            blocks = [Block(0, 0, d, 1, 1 + len(d), None, True, lines=count_lines(d)) for d in datas]

            def docs():
                for block in blocks:
                    if worker._fast(block, s) is None:
                        worker._slow(block, s)

            costs[name] = best(docs) / mib
        print(f"  --valid-fraction {fraction}: LF {costs['LF'] * 1e3:.1f} ms per MiB of text, CRLF "
              f"{costs['CRLF'] * 1e3:.1f} ms per MiB (CRLF / LF {costs['CRLF'] / costs['LF']:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--line-mb", default="16,64,256", help="sizes of the long JSON line, MB")
    ap.add_argument("--text-mb", type=int, default=8, help="text per line-ends pass, MiB")
    args = ap.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        print("long line (read_blocks):")
        long_line(Path(tmp), sorted(int(x) for x in args.line_mb.split(",")))
    print("line ends (a worker's block before tokenizing):")
    line_ends(args.text_mb)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
