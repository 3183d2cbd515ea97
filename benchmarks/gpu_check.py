"""GPU check: the GPU-marked tests, then gpt2-small (124M, block 1024, bf16) trained for a few
hundred steps from real shards and, in the same run, from synthetic batches already on the GPU.

    PYTHONPATH=. python benchmarks/gpu_check.py [--steps 300] [--batch-size 16] [--compile]

Both runs go through the same `train` loop (train.loop.run); the synthetic one only swaps the
DataLoader for tensors that never leave the GPU, so real/synthetic measures what reading shards
costs the GPU. Goals: real/synthetic >= 0.98, MFU >= 40% on an H100 or H200.
Runs on a CPU too (--device cpu --model gpt2-tiny) to check the script itself.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch


def gpt2_sized_tokenizer(out: Path, vocab: int = 50257) -> Path:
    """A word-level tokenizer with GPT-2's vocabulary size (no hub needed), EOS = last id."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {f"w{i}": i for i in range(vocab - 1)}
    words["<|endoftext|>"] = vocab - 1
    tk = Tokenizer(models.WordLevel(words, unk_token="w0"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>").save_pretrained(str(out))
    return out


def dataset(root: Path, tokens: int, vocab: int) -> Path:
    from shards import DatasetWriter

    path = root / "data"
    tok = gpt2_sized_tokenizer(path / "tokenizer", vocab)
    w = DatasetWriter(path, vocab_size=vocab, shard_tokens=tokens // 4)
    rng = np.random.default_rng(0)
    for start in range(0, tokens, 1 << 22):
        n = min(1 << 22, tokens - start)
        docs = rng.integers(200, 2000, size=n // 200 + 2)
        docs = docs[np.cumsum(docs) <= n]
        docs = np.append(docs, n - docs.sum()) if n - docs.sum() > 0 else docs
        w.add(rng.integers(0, vocab - 1, size=n), docs)
    w.finish(eos_id=vocab - 1, eos_separates_documents=True, tokenizer={"kind": "benchmark", "source": str(tok)},
             settings={}, inputs=[], stats={}, source_bytes=0, tool_version="bench")
    return path


def synthetic(batch: int, block: int, vocab: int, device: str):
    """Endless batches that already live on the device: no loader, no host-to-device copy."""
    pool = torch.randint(0, vocab, (8, batch, block + 1), device=device)
    i = 0
    while True:
        x = pool[i % 8]
        yield {"input_ids": x[:, :-1], "labels": x[:, 1:]}
        i += 1


def summarize(run: Path, skip: int) -> dict[str, float]:
    from train.metrics import read

    rows = [r for r in read(run / "metrics.jsonl") if "loss" in r and r["step"] > skip]
    mean = lambda k: float(np.mean([r[k] for r in rows])) if rows and k in rows[0] else float("nan")
    return {"tokens_per_s": mean("tokens_per_s"), "mfu": mean("mfu"), "data_wait": mean("data_wait"),
            "peak_mem_gb": max((r.get("peak_mem_gb", float("nan")) for r in rows), default=float("nan")),
            "loss": rows[-1]["loss"] if rows else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--model", default="gpt2-small")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--tokens", type=float, default=50e6, help="size of the real dataset")
    ap.add_argument("--skip-tests", action="store_true")
    args = ap.parse_args()
    from train.config import TrainConfig
    from train.loop import run
    from train.preflight import plan_of

    t0 = time.monotonic()
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    print(f"device: {name}; torch {torch.__version__}; steps {args.steps}, batch {args.batch_size} x "
          f"{args.block_size}, model {args.model}, compile {args.compile}", flush=True)
    if not args.skip_tests:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py", "-p",
                            "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True)
        print("gpu tests:", (r.stdout.strip().splitlines() or ["(no output)"])[-1], flush=True)
        if r.returncode not in (0, 5):
            print(r.stdout[-4000:], r.stderr[-2000:])
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        root = Path(tmp)
        vocab = 50257
        data = dataset(root, int(args.tokens), vocab)
        for f in data.glob("*.npy"):
            f.read_bytes()  # page cache warm: the disk is not what is measured
        results = {}
        for kind in ("real", "synthetic"):
            cfg = TrainConfig(data=(str(data),), out=str(root / kind), model=args.model, block_size=args.block_size,
                              batch_size=args.batch_size, max_steps=args.steps, warmup=min(20, args.steps // 10), log_every=10,
                              eval_every=10**9, checkpoint_every=10**9, sample_tokens=0, workers=args.workers,
                              device=args.device, compile=args.compile, seed=0)
            source = synthetic(args.batch_size, args.block_size, vocab, args.device) if kind == "synthetic" else None
            start = time.monotonic()
            run(plan_of(cfg), quiet=True, batches=source)
            results[kind] = summarize(root / kind, skip=min(50, args.steps // 3))
            results[kind]["seconds"] = time.monotonic() - start
            r = results[kind]
            print(f"{kind:>9}: {r['tokens_per_s']:,.0f} tokens/s | MFU {r['mfu']:.1%} | data wait "
                  f"{r['data_wait']:.2%} | peak memory {r['peak_mem_gb']:.1f} GB | last loss {r['loss']:.3f} | "
                  f"{r['seconds']:.0f} s", flush=True)
        ratio = results["real"]["tokens_per_s"] / results["synthetic"]["tokens_per_s"]
        print(f"real/synthetic = {ratio:.3f} (goal >= 0.98); MFU real {results['real']['mfu']:.1%} (goal >= 40% on "
              f"H100/H200); total {time.monotonic() - t0:.0f} s")
        out = os.environ.get("OUT")
        if out:
            Path(out, "gpu_check.json").write_text(json.dumps({"device": name, **results, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
