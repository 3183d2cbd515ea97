"""CPU threads of `train`: the default (--threads auto) against one thread, on an idle machine
and on one kept busy, A B A B.

    python benchmarks/bench_threads.py [--steps 12] [--rounds 2] [--workers 1] [--busy 0 1]

The quickstart's shape (gpt2-mini, block 128, batch 16) on the quickstart's data, from a fresh
subprocess each time, alternating the two settings so that drift on a shared machine hits both:
  auto   --threads unset: this process's share of the cores (all of them for one process)
  one    --threads 1
With `--busy N`, N processes spin on the CPU during the measurement, as other jobs on a shared
machine would. Wall seconds of the whole command and the median training rate of its log lines
are printed for each run; the ratios compare the medians.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
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


def _spin() -> None:
    while True:
        pass


def measure(root: Path, name: str, r: int, busy: int, args) -> tuple[float, float]:
    run = root / f"run-{name}-{busy}-{r}"
    cmd = [sys.executable, "-m", "train", "--data", str(root / "ds"), "--out", str(run), "--model", "gpt2-mini",
           "--block-size", "128", "--batch-size", "16", "--max-steps", str(args.steps), "--warmup", "1",
           "--log-every", "1", "--workers", str(args.workers), "--sample-tokens", "0", "--eval-every", "100000",
           "--checkpoint-every", "100000", "-q"]
    if name == "one":
        cmd += ["--threads", "1"]
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
    for s in spinners:
        s.start()
    try:
        t0 = time.perf_counter()
        subprocess.run(cmd, env=ENV, check=True)
        took = time.perf_counter() - t0
    finally:
        for s in spinners:
            s.terminate()
            s.join()
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return took, statistics.median(x["tokens_per_s"] for x in logged if "tokens_per_s" in x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="spinning processes, one setting each")
    args = ap.parse_args()
    from train.runtime import default_threads

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    print(f"auto = {default_threads()} thread(s); {args.workers} DataLoader worker(s)")
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        root = Path(tmp)
        subprocess.run([sys.executable, "-m", "preprocess", str(CORPUS / "train.txt"), "--vocab-size", "8000",
                        "--out", str(root / "ds"), "-q"], env=ENV, check=True)
        for busy in args.busy:
            times: dict[str, list[float]] = {"auto": [], "one": []}
            rates: dict[str, list[float]] = {"auto": [], "one": []}
            print(f"\n{busy} busy process(es) beside the run:")
            for r in range(args.rounds):
                for name in ("auto", "one"):
                    took, tps = measure(root, name, r, busy, args)
                    times[name].append(took)
                    rates[name].append(tps)
                    print(f"  round {r + 1} {name:4s}: {took:6.1f} s whole command, {tps:8,.0f} tokens/s (median step)")
            a, o = statistics.median(times["auto"]), statistics.median(times["one"])
            ra, ro = statistics.median(rates["auto"]), statistics.median(rates["one"])
            print(f"  auto / one thread: {o / a:.2f}x by whole command, {ra / ro:.2f}x by training rate "
                  f"(medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
