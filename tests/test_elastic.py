"""Elastic resume on CPU ranks (torchrun, gloo): the global batch world_size x batch x accumulation
decides the blocks of each step, so 2 ranks x batch b train like 1 process x batch 2b, and a run
may stop on one and resume on the other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import train_args
from tests.train_helpers import evals, losses, subprocess_env, train_cli
from train.checkpoint import Checkpointer

COMMON = ("--max-steps", "6", "--checkpoint-every", "3", "--eval-every", "3", "--sample-tokens", "0")
pytestmark = pytest.mark.slow


def _torchrun(*args: object) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "train",
           *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr


def _close(a: dict[int, float], b: dict[int, float]) -> None:
    assert sorted(a) == sorted(b)
    assert [b[s] for s in sorted(b)] == pytest.approx([a[s] for s in sorted(a)], rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def one_by_four(train_valid, tmp_path_factory) -> Path:
    """The uninterrupted reference: 1 process x batch 4, 6 steps."""
    run = tmp_path_factory.mktemp("ref") / "run"
    r = train_cli(*train_args(train_valid, run), *COMMON, "--batch-size", "4")
    assert r.exit_code == 0, r.output
    return run


def test_two_ranks_stop_and_one_process_resumes(train_valid, one_by_four, tmp_path):
    run = tmp_path / "run"
    _torchrun(*train_args(train_valid, run), *COMMON, "--batch-size", "2", "--stop-at", "3")
    assert Checkpointer(run).latest().layout == (2, 2, 1)
    resumed = train_cli("--out", run, "--resume", "--batch-size", "4")
    assert resumed.exit_code == 0, resumed.output
    assert "the same 4 blocks per step" in resumed.output
    _close(losses(one_by_four), losses(run))
    _close(dict(evals(one_by_four)), dict(evals(run)))


def test_one_process_stops_and_two_ranks_resume(train_valid, one_by_four, tmp_path):
    run = tmp_path / "run"
    assert train_cli(*train_args(train_valid, run), *COMMON, "--batch-size", "4", "--stop-at", "3").exit_code == 0
    _torchrun("--out", run, "--resume", "--batch-size", "2", "-q")
    assert Checkpointer(run).latest().layout == (2, 2, 1)
    _close(losses(one_by_four), losses(run))
    _close(dict(evals(one_by_four)), dict(evals(run)))


def test_two_ranks_equal_one_process_with_accumulation_and_fewer_eval_blocks_than_ranks(train_valid, tmp_path):
    """2 x batch 2 x accumulation 2 == 1 x batch 4 x accumulation 2, step for step, evaluating a
    single validation block: rank 1 holds none of it and must still join the result."""
    extra = ("--grad-accum", "2", "--eval-blocks", "1")
    _torchrun(*train_args(train_valid, tmp_path / "two"), *COMMON, *extra, "--batch-size", "2")
    one = train_cli(*train_args(train_valid, tmp_path / "one"), *COMMON, *extra, "--batch-size", "4")
    assert one.exit_code == 0, one.output
    _close(losses(tmp_path / "one"), losses(tmp_path / "two"))
    assert len(evals(tmp_path / "two")) == 3  # steps 0, 3, 6
    _close(dict(evals(tmp_path / "one")), dict(evals(tmp_path / "two")))
