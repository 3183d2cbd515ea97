"""preprocess on Parquet: peak memory against row-group size and corpus size, and the main process's cost.

    python benchmarks/bench_parquet_memory.py [--mb 30] [--workers N]

In one run on one machine, the same documents (the sample corpus repeated to --mb MB of text):
  txt            as a .txt file: the baseline
  small groups   as Parquet with row groups of 1,000 rows (~0.4 MB of text each)
  one group      as Parquet with all rows in one row group (what pyarrow's write_table does up to
                 a million rows): the case that must not load a row group whole
  one group 10x  the same at 10x the text
Memory: peak PSS summed over the `preprocess` process tree (as bench_preprocess.py measures it).
Main process: seconds to cut the 1x corpus into worker tasks in this process (decoding the
Parquet column; splitting text into blocks), beside the raw tokenizer's seconds for that text.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_preprocess import peak_memory
from benchmarks.common import CORPUS, machine, make_tokenizer, mb


def write_corpus(root: Path, megabytes: float, tag: str, only_one: bool = False) -> tuple[Path | None, ...]:
    """(txt, Parquet with small row groups, Parquet with one row group) of the same documents
    (with only_one: just the last)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = (CORPUS / "train.txt").read_text(encoding="utf-8").splitlines()
    size = sum(len(s.encode()) + 1 for s in lines)
    reps = max(1, int(megabytes * 1e6 // size) + 1)
    # A number in front of each copy keeps the documents distinct (no dictionary shortcut).
    docs = [f"{r} {s}" for r in range(reps) for s in lines]
    txt, small, one = root / f"{tag}.txt", root / f"{tag}-small.parquet", root / f"{tag}-one.parquet"
    table = pa.table({"id": pa.array(range(len(docs)), pa.int64()), "text": pa.array(docs, pa.string())})
    pq.write_table(table, one, row_group_size=len(docs), use_dictionary=False)
    if only_one:
        return None, None, one
    txt.write_text("\n".join(docs) + "\n", encoding="utf-8")
    pq.write_table(table, small, row_group_size=1000, use_dictionary=False)
    assert pq.ParquetFile(one).metadata.num_row_groups == 1
    return txt, small, one


def cutting_seconds(path: Path, fmt: str) -> float:
    """Seconds for the main process's share of the work: cutting the file into worker tasks."""
    from preprocess.inputs import InputFile, Unit
    from preprocess.reader import tasks

    f = InputFile(path, path.name, path.stat().st_size, fmt, None)
    t0 = time.perf_counter()
    for _ in tasks([f], [Unit(0, 0, None)], 0, text_key="text", max_doc_bytes=1 << 20):
        pass
    return time.perf_counter() - t0


def tokenizer_seconds(path: Path, tok_dir: Path) -> float:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
    lines = path.read_text(encoding="utf-8").splitlines()
    t0 = time.perf_counter()
    for i in range(0, len(lines), 2000):
        sp.encode(lines[i:i + 2000], num_threads=1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=30, help="text of the 1x corpus (MB)")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="bench-pq-") as tmp:
        root = Path(tmp)
        tok = make_tokenizer(root / "tok")
        txt, small, one = write_corpus(root, args.mb, "x1")
        for p in (txt, small, one):
            p.read_bytes()  # page cache warm for everyone
        print(f"\n[1] peak memory (PSS, all processes), --workers {args.workers}; "
              f"{txt.stat().st_size / 1e6:.0f} MB of text")
        rows = [("txt (baseline)", txt), ("Parquet, 1,000-row groups", small), ("Parquet, one row group", one)]
        peaks = {}
        for label, path in rows:
            total, largest = peak_memory(path, tok, root / "out", args.workers)
            peaks[label] = total
            print(f"  {label:28s} file {path.stat().st_size / 1e6:6.0f} MB  peak {mb(total)}  "
                  f"(largest process {mb(largest)})")
        ten = write_corpus(root, args.mb * 10, "x10", only_one=True)[2]
        total, largest = peak_memory(ten, tok, root / "out", args.workers)
        print(f"  {'Parquet, one row group, 10x':28s} file {ten.stat().st_size / 1e6:6.0f} MB  peak {mb(total)}  "
              f"(largest process {mb(largest)})")
        base = peaks["txt (baseline)"]
        print(f"  ratios to txt: small groups {peaks['Parquet, 1,000-row groups'] / base:.2f}, one group "
              f"{peaks['Parquet, one row group'] / base:.2f}, one group 10x {total / base:.2f}; "
              f"one group 10x / 1x {total / peaks['Parquet, one row group']:.2f}")
        ten.unlink()

        print("\n[2] the main process's share: cutting the 1x corpus into worker tasks, in this process")
        tok_s = tokenizer_seconds(txt, tok)
        for label, path, fmt in (("txt", txt, "txt"), ("Parquet, 1,000-row groups", small, "parquet"),
                                 ("Parquet, one row group", one, "parquet")):
            s = cutting_seconds(path, fmt)
            print(f"  {label:28s} {s:6.2f} s = {s / tok_s:.3f} x the raw tokenizer's {tok_s:.1f} s on the same text")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
