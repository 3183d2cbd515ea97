"""BlockDataset: tokens/s into the training process, against the tutorial and nanoGPT, plus
memory and start-up on a 10^10-token dataset.

    python benchmarks/bench_blockdataset.py [--tokens-huge 1e10] [--seconds 8]

Everything is measured in this one run on this machine, so the ratios compare like with like:
  ours      DataLoader(BlockDataset(batch_size=8, block 1024), num_workers=2, pin_memory=True)
  tutorial  the seed tutorial's pipeline: an IterableDataset that tokenizes text lines with
            AutoTokenizer inside 2 DataLoader workers (each worker reads the whole file),
            a shuffle buffer, collate_fn into batches of 8
  nanoGPT   train.py's get_batch: a fresh np.memmap of a uint16 file per batch, 8 random
            slices, .astype(int64), torch.stack, pin_memory, in the training process
  memcpy    copying the same number of int64 tokens from one in-memory array to another
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from benchmarks.common import CORPUS, Timer, machine, make_tokenizer, mb, private, rate
from shards.layout import INDEX_DTYPE, index_name, npy_header, shard_name
from shards.manifest import ShardEntry, write_json_atomic
from shards.writer import DatasetWriter, build_manifest
from shards.hashing import sha256_file
from train import BlockDataset
from train.dataset import as_is

BATCH, BLOCK = 8, 1024


def consume(loader, seconds: float, warmup: int = 20) -> float:
    """Tokens/s of input_ids the loop receives, after a few warm-up batches."""
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b = next(it)
        n += b["input_ids"].numel()
    return n / (time.perf_counter() - t0)


# -- the tutorial's pipeline (tokenizing in the DataLoader) ---------------------------------------
class TutorialBlockDataset(IterableDataset):
    def __init__(self, path, tokenizer, block_size):
        self.path, self.tokenizer, self.block_size = path, tokenizer, block_size

    def __iter__(self):
        buffer = []
        while True:  # epochs, so the benchmark can run as long as it likes
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    buffer.extend(self.tokenizer.encode(line.rstrip("\n")))
                    while len(buffer) >= self.block_size + 1:
                        ids = buffer[: self.block_size + 1]
                        yield {"input_ids": ids[: self.block_size], "labels": ids[1:]}
                        buffer = buffer[self.block_size:]


class ShuffleBuffer(IterableDataset):
    def __init__(self, ds, size=1000):
        self.ds, self.size = ds, size

    def __iter__(self):
        buf = []
        for x in self.ds:
            buf.append(x)
            if len(buf) >= self.size:
                yield buf.pop(random.randrange(len(buf)))


def collate(items):
    return {k: torch.tensor([it[k] for it in items], dtype=torch.long) for k in items[0]}


def tutorial_rate(text: Path, tok_dir: Path, seconds: float) -> float:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    ds = ShuffleBuffer(TutorialBlockDataset(text, tok, BLOCK), size=100)
    loader = DataLoader(ds, batch_size=BATCH, num_workers=2, collate_fn=collate, pin_memory=True)
    return consume(loader, seconds, warmup=2)


# -- nanoGPT's get_batch --------------------------------------------------------------------------
def nanogpt_rate(bin_path: Path, seconds: float) -> float:
    device_is_cuda = torch.cuda.is_available()

    def get_batch():
        data = np.memmap(bin_path, dtype=np.uint16, mode="r")  # recreated per batch (nanoGPT #287 fix)
        ix = torch.randint(len(data) - BLOCK, (BATCH,))
        x = torch.stack([torch.from_numpy((data[i:i + BLOCK]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1:i + 1 + BLOCK]).astype(np.int64)) for i in ix])
        if device_is_cuda:
            x, y = x.pin_memory(), y.pin_memory()
        return {"input_ids": x, "labels": y}

    class Loop:
        def __iter__(self):
            while True:
                yield get_batch()

    return consume(Loop(), seconds)


class Constant(IterableDataset):
    """The cheapest possible worker: hands over one ready batch again and again."""

    def __iter__(self):
        from train.dataset import TokenBatch

        compact = np.zeros((BATCH, BLOCK + 1), dtype=np.uint16)
        while True:
            yield TokenBatch.of(compact)


def memcpy_rate(seconds: float) -> float:
    src = np.random.default_rng(0).integers(0, 8000, size=(64, BATCH, BLOCK + 1))
    dst = np.empty((BATCH, BLOCK + 1), dtype=np.int64)
    n, i, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        np.copyto(dst, src[i % 64])
        n += BATCH * BLOCK
        i += 1
    return n / (time.perf_counter() - t0)


# -- datasets ------------------------------------------------------------------------------------
def real_dataset(root: Path, tok_dir: Path, tokens: int) -> Path:
    """A dataset of `tokens` random ids (vocab 8000) in 4 shards, plus the same stream as a raw
    uint16 file for nanoGPT."""
    path = root / "real"
    shutil.copytree(tok_dir, path / "tokenizer")
    w = DatasetWriter(path, vocab_size=8000, shard_tokens=tokens // 4)
    with open(root / "train.bin", "wb") as raw:
        for start in range(0, tokens, 1 << 22):
            chunk = np.random.default_rng(start).integers(0, 8000, size=min(1 << 22, tokens - start))
            w.add(chunk, [len(chunk)])
            raw.write(chunk.astype(np.uint16).tobytes())
    w.finish(eos_id=2, eos_separates_documents=True, tokenizer={"kind": "benchmark", "source": str(tok_dir)},
             settings={}, inputs=[], stats={}, source_bytes=0, tool_version="bench")
    return path


def huge_dataset(root: Path, tok_dir: Path, tokens: int, shards: int = 10) -> Path:
    """A dataset of `tokens` ids as sparse files: only headers on disk, zeros everywhere else."""
    import hashlib

    path = root / "huge"
    shutil.copytree(tok_dir, path / "tokenizer")
    per = tokens // shards
    entries, stream = [], hashlib.sha256()
    zeros = bytes(64 << 20)
    for i in range(shards):
        n = per if i < shards - 1 else tokens - per * (shards - 1)
        f = path / shard_name(i)
        with open(f, "wb") as out:
            out.write(npy_header(np.dtype("<u2"), n))
            out.truncate(128 + 2 * n)  # sparse: no data blocks on disk
        left = 2 * n
        while left:  # the manifest's hashes are real: the stream is all zeros
            step = min(left, len(zeros))
            stream.update(zeros[:step])
            left -= step
        idx = path / index_name(i)
        with open(idx, "wb") as out:
            out.write(npy_header(INDEX_DTYPE, 1) + np.zeros(1, INDEX_DTYPE).tobytes())
        entries.append(ShardEntry(f.name, n, 1, f.stat().st_size, sha256_file(f), idx.name, idx.stat().st_size,
                                  sha256_file(idx)))
    manifest = build_manifest(path, dtype=np.dtype("<u2"), vocab_size=8000, eos_id=None,
                              eos_separates_documents=False, tokenizer={"kind": "benchmark", "source": "zeros"},
                              shards=entries, stream_sha256=stream.hexdigest(), settings={}, inputs=[], stats={},
                              source_bytes=0, tool_version="bench")
    write_json_atomic(path / "manifest.json", manifest)
    return path


def huge_checks(path: Path, batches: int) -> dict:
    """Start-up time and worker memory at the start and after many batches."""
    t0 = time.perf_counter()
    ds = BlockDataset(path, BLOCK, batch_size=BATCH, seed=0, epochs=None)
    loader = DataLoader(ds, batch_size=None, num_workers=2, pin_memory=True)
    it = iter(loader)
    next(it)
    first = time.perf_counter() - t0
    workers = [w.pid for w in it._workers]
    start = {pid: private(pid) for pid in workers}
    main_start = private()
    for _ in range(batches):
        next(it)
    end = {pid: private(pid) for pid in workers}
    main_end = private()
    del it
    return {"n_blocks": ds.n_blocks, "first_batch_s": first, "workers_start": start, "workers_end": end,
            "main_start": main_start, "main_end": main_end}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens-huge", type=float, default=1e10)
    ap.add_argument("--tokens-real", type=float, default=50e6)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--batches", type=int, default=20_000, help="batches read from the huge dataset")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine()}; torch {torch.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-bd-") as tmp:
        root = Path(tmp)
        tok_dir = make_tokenizer(root / "tok")

        with Timer() as t:
            huge = huge_dataset(root, tok_dir, int(args.tokens_huge))
        print(f"\n[1] synthetic dataset of {int(args.tokens_huge):,} tokens (sparse files, {t.seconds:.0f} s to build)")
        h = huge_checks(huge, args.batches)
        results["huge"] = h
        print(f"  blocks: {h['n_blocks']:,}; BlockDataset + DataLoader(2 workers) to first batch: {h['first_batch_s']:.3f} s")
        for pid in h["workers_start"]:
            s, e = h["workers_start"][pid], h["workers_end"][pid]
            print(f"  worker {pid}: own (private) memory {mb(s['private'])} -> {mb(e['private'])} after "
                  f"{args.batches:,} batches; RSS {mb(s['rss'])} -> {mb(e['rss'])} (of which page cache "
                  f"{mb(s['file'])} -> {mb(e['file'])}, the rest shared copy-on-write with the parent)")
        print(f"  training process: private memory {mb(h['main_start']['private'])} -> {mb(h['main_end']['private'])}")

        n_real = int(args.tokens_real)
        with Timer() as t:
            real = real_dataset(root, tok_dir, n_real)
        print(f"\n[2] tokens/s into the training loop, batch {BATCH} x block {BLOCK}, {args.seconds:.0f} s each "
              f"(dataset of {n_real:,} random tokens in 4 shards, page cache warm)")
        for f in list(real.glob("*.npy")) + [root / "train.bin"]:
            f.read_bytes()  # warm the page cache for every contender alike
        stream = lambda: BlockDataset(real, BLOCK, batch_size=BATCH, seed=0, epochs=None)
        ours = consume(DataLoader(stream(), batch_size=None, num_workers=2, pin_memory=True), args.seconds)
        ours_as_is = consume(DataLoader(stream(), batch_size=None, num_workers=2, pin_memory=True,
                                        collate_fn=as_is), args.seconds)
        in_process = consume(stream(), args.seconds)
        floor = consume(DataLoader(Constant(), batch_size=None, num_workers=2, collate_fn=as_is), args.seconds)
        gc.collect()
        nano = nanogpt_rate(root / "train.bin", args.seconds)
        text = root / "corpus.txt"
        text.write_text((CORPUS / "train.txt").read_text(encoding="utf-8"), encoding="utf-8")
        tut = tutorial_rate(text, tok_dir, args.seconds)
        copy = memcpy_rate(args.seconds)
        results.update(ours=ours, ours_as_is=ours_as_is, in_process=in_process, floor=floor, tutorial=tut,
                       nanogpt=nano, memcpy=copy)
        print(f"  ours (BlockDataset, 2 workers): {rate(ours)} tokens/s")
        print(f"  ours, collate_fn=as_is as `train` uses it: {rate(ours_as_is)} tokens/s ({ours_as_is / nano:.2f}x nanoGPT)")
        print(f"  ours in the training process (no workers): {rate(in_process)} tokens/s ({in_process / nano:.2f}x nanoGPT)")
        print(f"  DataLoader's own ceiling here (2 workers handing over a ready {BATCH}x{BLOCK + 1} uint16 batch): "
              f"{rate(floor)} tokens/s")
        print(f"  tutorial (tokenize in DataLoader): {rate(tut)} tokens/s  -> ours is {ours / tut:,.0f}x  (goal >= 100x)")
        print(f"  nanoGPT get_batch (in process): {rate(nano)} tokens/s  -> ours is {ours / nano:.2f}x  (goal >= 2x)")
        print(f"  plain memory copy of int64 tokens: {rate(copy)} tokens/s  -> ours is {ours / copy:.1%} of it")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
