"""`train` as real processes: SIGTERM and Ctrl-C stop cleanly; torchrun with 2 CPU ranks (gloo)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import train_args
from tests.train_helpers import subprocess_env, wait_until
from train.checkpoint import Checkpointer
from train.metrics import read



@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_signal_finishes_the_step_saves_and_exits_0(train_valid, tmp_path, how):
    run = tmp_path / "run"
    args = train_args(train_valid, run, "--max-steps", "100000", "--workers", "2", "--checkpoint-every", "100000")
    proc = subprocess.Popen([sys.executable, "-m", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=subprocess_env(), start_new_session=True)
    wait_until(lambda: (run / "metrics.jsonl").exists()
               and sum(1 for r in read(run / "metrics.jsonl") if "loss" in r) >= 3, proc)
    if how == "sigterm":
        os.kill(proc.pid, signal.SIGTERM)
    else:  # a terminal's Ctrl-C reaches the whole process group, DataLoader workers included
        os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    logged = max(r["step"] for r in read(run / "metrics.jsonl") if "loss" in r)
    latest = Checkpointer(run).latest()
    assert latest is not None and latest.path.name == f"step_{logged:08d}"  # the step it was in, saved
    resumed = subprocess.run([sys.executable, "-m", "train", "--out", str(run), "--resume", "--stop-at",
                              str(logged + 2), "-q"], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert Checkpointer(run).latest().path.name == f"step_{logged + 2:08d}"


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=300)


@pytest.mark.slow
def test_two_cpu_ranks_train_checkpoint_and_resume_exactly(train_valid, tmp_path):
    common = ["--max-steps", "6", "--checkpoint-every", "3", "--eval-every", "3", "--sample-tokens", "0"]
    straight = _torchrun(*train_args(train_valid, tmp_path / "a"), *common)
    assert straight.returncode == 0, straight.stdout + straight.stderr
    assert (tmp_path / "a" / "final" / "model.safetensors").exists()
    first = _torchrun(*train_args(train_valid, tmp_path / "b"), *common, "--stop-at", "3")
    assert first.returncode == 0, first.stdout + first.stderr
    second = _torchrun("--out", str(tmp_path / "b"), "--resume", "-q")
    assert second.returncode == 0, second.stdout + second.stderr
    losses = lambda run: [(r["step"], r["loss"]) for r in read(run / "metrics.jsonl") if "loss" in r]
    assert len(losses(tmp_path / "a")) == 6
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    meta = Checkpointer(tmp_path / "b").latest().meta
    assert meta["layout"]["world_size"] == 2 and meta["step"] == 6
