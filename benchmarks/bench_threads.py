"""CPU threads of `train`: the default (--threads auto) against torch's own default, A B A B.

    python benchmarks/bench_threads.py [--steps 12] [--rounds 2] [--workers 1]

The quickstart's shape (gpt2-mini, block 128, batch 16) on the quickstart's data, from a
subprocess each time, alternating the two settings so that drift on a shared machine hits both:
  auto   --threads unset: this process's share of the cores less one per DataLoader worker
  torch  --threads N with N = the cores this process may run on (what torch picks by itself)
Wall seconds of the whole command and the training rate of its log lines are printed for each
run; the ratio compares the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import CORPUS, machine  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
ENV.pop("OMP_NUM_THREADS", None)  # the point is what happens without it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    sys.path.insert(0, str(ROOT))
    from train.runtime import default_threads

    auto = default_threads(args.workers)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    print(f"auto = {auto} thread(s) with {args.workers} DataLoader worker(s); torch's default = {cores}")
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        root = Path(tmp)
        subprocess.run([sys.executable, "-m", "preprocess", str(CORPUS / "train.txt"), "--vocab-size", "8000",
                        "--out", str(root / "ds"), "-q"], env=ENV, check=True)
        times: dict[str, list[float]] = {"auto": [], "torch": []}
        rates: dict[str, list[float]] = {"auto": [], "torch": []}
        for r in range(args.rounds):
            for name in ("auto", "torch"):
                run = root / f"run-{name}-{r}"
                cmd = [sys.executable, "-m", "train", "--data", str(root / "ds"), "--out", str(run), "--model",
                       "gpt2-mini", "--block-size", "128", "--batch-size", "16", "--max-steps", str(args.steps),
                       "--warmup", "1", "--log-every", "1", "--workers", str(args.workers), "--sample-tokens", "0",
                       "--eval-every", "100000", "--checkpoint-every", "100000", "-q"]
                if name == "torch":
                    cmd += ["--threads", str(cores)]
                t0 = time.perf_counter()
                subprocess.run(cmd, env=ENV, check=True)
                took = time.perf_counter() - t0
                logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
                tps = statistics.median(x["tokens_per_s"] for x in logged if "tokens_per_s" in x)
                times[name].append(took)
                rates[name].append(tps)
                print(f"  round {r + 1} {name:5s}: {took:6.1f} s whole command, {tps:8,.0f} tokens/s (median step)")
        a, t = statistics.median(times["auto"]), statistics.median(times["torch"])
        ra, rt = statistics.median(rates["auto"]), statistics.median(rates["torch"])
        print(f"\nauto / torch: {t / a:.2f}x faster by whole command, {ra / rt:.2f}x by training rate "
              f"(medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
