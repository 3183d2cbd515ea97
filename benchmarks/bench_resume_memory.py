"""Resume memory: host memory of a 1-rank and a 2-rank `train --resume` of the same checkpoint.

    python benchmarks/bench_resume_memory.py [--layers 12] [--width 768]

A checkpoint of a GPT-2 of about 86M parameters (state.pt about 1 GB: weights and AdamW's two
moments) is written once, by a run of one step; then, in this one run on this machine:
  resume     `train --resume` of that finished run with its final/ removed, on 1 process and on
             2 CPU ranks (torchrun, gloo): every rank loads the checkpoint into its model, AdamW
             and grad scaler, rank 0 rewrites final/, no training step runs. state.pt is
             memory-mapped (torch.load(mmap=True, weights_only=True)), so the ranks of a node
             share its pages in the page cache
  baseline   N processes doing what the loop did before: torch.load(state.pt) into each process's
             own memory, then load_state_dict into a model and an AdamW
Sampled every 20 ms over the whole process tree: peak total PSS (shared pages split between the
processes that map them: the node's real cost) and peak total anonymous memory (each process's
own, unshareable pages).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, mb, private, tree  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

BASELINE = r"""
import json, sys, time, torch
from transformers import GPT2Config, GPT2LMHeadModel
from train.optim import make_optimizer
path = sys.argv[1]
meta = json.load(open(path + "/meta.json"))
model = GPT2LMHeadModel(GPT2Config(**{k: v for k, v in meta["model"]["config"].items()
                                     if k not in ("architectures", "transformers_version")}))
opt = make_optimizer(model, lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95), device=torch.device("cpu"))
state = torch.load(path + "/state.pt", map_location="cpu", weights_only=True, mmap=%(mmap)s)
model.load_state_dict(state["model"])
opt.load_state_dict(state["optimizer"])
time.sleep(0.5)
"""


def measure(cmds: list[list[str]]) -> tuple[int, int, int]:
    """Run the commands side by side; (peak total PSS, peak total anonymous memory, peak largest RSS)."""
    procs = [subprocess.Popen(c, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds]
    peak_pss = peak_anon = peak_rss = 0
    while any(p.poll() is None for p in procs):
        pss = anon = 0
        for p in procs:
            for pid in tree(p.pid):
                try:
                    m = private(pid)
                except (OSError, KeyError):
                    continue
                pss, anon, peak_rss = pss + m["pss"], anon + m["anon"], max(peak_rss, m["rss"])
        peak_pss, peak_anon = max(peak_pss, pss), max(peak_anon, anon)
        time.sleep(0.02)
    for p in procs:
        if p.returncode:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(p.args)}\n{p.stderr.read()}")
    return peak_pss, peak_anon, peak_rss


def make_data(root: Path) -> Path:
    from benchmarks.common import CORPUS

    subprocess.run([sys.executable, "-m", "preprocess", str(CORPUS / "train.txt"), "--vocab-size", "1000",
                    "--character-coverage", "0.98", "--out", str(root / "ds"), "--workers", "1", "-q"],
                   env=ENV, check=True)
    return root / "ds"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        root = Path(tmp)
        data = make_data(root)
        shape = root / "model.json"
        shape.write_text(json.dumps({"n_layer": args.layers, "n_head": 12, "n_embd": args.width, "n_positions": 64}))
        run = root / "run"
        train = [sys.executable, "-m", "train", "--data", str(data), "--out", str(run), "--model", str(shape),
                 "--batch-size", "2", "--max-steps", "1", "--warmup", "0", "--workers", "0", "--sample-tokens", "0",
                 "-q"]
        subprocess.run(train, env=ENV, check=True)
        ckpt = run / "checkpoints" / "step_00000001"
        size = (ckpt / "state.pt").stat().st_size
        params = json.loads((ckpt / "meta.json").read_text())["model"]["config"]
        print(f"\ncheckpoint: {ckpt.name}, state.pt {mb(size)} (n_layer {params['n_layer']}, n_embd {params['n_embd']})")
        print(f"{'':34s} {'peak PSS, all':>15s} {'peak anon, all':>15s} {'largest RSS':>13s}")
        results = {}
        for ranks in (1, 2):
            # The run is at --max-steps with its final/ gone: --resume loads the checkpoint into the
            # model, AdamW and grad scaler on every rank, then rank 0 rewrites final/. No step runs,
            # so what is measured is the resume itself, not a training step's memory.
            shutil.rmtree(run / "final")
            resume = ["--out", str(run), "--resume", "-q"]
            if ranks == 1:
                cmd = [sys.executable, "-m", "train", *resume]
            else:
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                       "-m", "train", *resume, "--batch-size", "1"]
            results[("resume", ranks)] = r = measure([cmd])
            print(f"  train --resume, {ranks} rank(s){'':13s} {mb(r[0]):>15s} {mb(r[1]):>15s} {mb(r[2]):>13s}")
        last = ckpt
        for mmap in (False, True):
            for n in (1, 2):
                code = BASELINE % {"mmap": mmap}
                results[("load", mmap, n)] = r = measure([[sys.executable, "-c", code, str(last)]] * n)
                what = f"torch.load(mmap={mmap}) x {n}"
                print(f"  {what:32s} {mb(r[0]):>15s} {mb(r[1]):>15s} {mb(r[2]):>13s}")
        one, two = results[("resume", 1)], results[("resume", 2)]
        print(f"\n  train --resume: the second rank adds {mb(two[0] - one[0])} PSS ({two[0] / one[0]:.2f} x one rank); "
              f"a private copy of state.pt per rank would add {mb(size)} more each")
        for mmap in (False, True):
            a, b = results[("load", mmap, 1)], results[("load", mmap, 2)]
            print(f"  load alone, mmap={mmap}: the second process adds {mb(b[0] - a[0])} PSS")


if __name__ == "__main__":
    main()
