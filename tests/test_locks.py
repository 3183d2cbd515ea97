"""One writer per directory: a second `train` on a RUN or `preprocess` on an --out is refused at
once naming the holder's pid; a killed holder leaves no stale lock; readers take no lock."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shards.lock import LOCK_NAME, DirectoryBusyError, DirectoryLock
from tests.conftest import preprocess_args, train_args
from tests.helpers import preprocess_cli
from tests.train_helpers import one_error_line, subprocess_env, train_cli, wait_until
from train.metrics import read



def test_a_second_lock_is_refused_naming_the_holder_and_released_cleanly(tmp_path):
    first = DirectoryLock(tmp_path, "train").acquire()
    with pytest.raises(DirectoryBusyError) as e:
        DirectoryLock(tmp_path, "preprocess").acquire()
    assert str(e.value) == (f"{tmp_path}: another train (pid {os.getpid()}) is writing here right now; wait for it "
                            "to finish or stop it (one writer per directory)")
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    with DirectoryLock(tmp_path, "preprocess"):
        pass


def test_a_stale_lock_file_does_not_block(tmp_path):
    (tmp_path / LOCK_NAME).write_text("999999 train\n")  # left by a process that died: nobody holds it
    with DirectoryLock(tmp_path, "train"):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()} train\n"


def test_the_kernel_frees_the_lock_of_a_killed_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from shards.lock import DirectoryLock; "
                               f"DirectoryLock({str(tmp_path)!r}, 'train').acquire(); print('held', flush=True); "
                               "time.sleep(600)"], stdout=subprocess.PIPE, text=True, env=subprocess_env())
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(DirectoryBusyError, match=f"pid {holder.pid}"):
        DirectoryLock(tmp_path, "train").acquire()
    holder.kill()
    holder.wait()
    with DirectoryLock(tmp_path, "train"):  # no stale lock: taken at once
        pass


@pytest.mark.slow
def test_a_second_train_on_a_run_is_refused_and_a_killed_one_leaves_no_lock(train_valid, tmp_path):
    run = tmp_path / "run"
    args = train_args(train_valid, run, "--max-steps", "100000", "--checkpoint-every", "2", "--eval-every", "100000")
    proc = subprocess.Popen([sys.executable, "-m", "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=subprocess_env())
    try:
        wait_until(lambda: (run / "checkpoints" / "step_00000002" / "COMPLETE").exists(), proc)
        line = one_error_line(train_cli("--out", run, "--resume", "-q"))
        assert line == (f"error: {run}: another train (pid {proc.pid}) is writing here right now; wait for it "
                        "to finish or stop it (one writer per directory)")
        second_run = one_error_line(train_cli(*args))  # without --resume: the lock is the first thing checked
        assert f"pid {proc.pid}" in second_run
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = train_cli("--out", run, "--resume", "--stop-at", "100", "--max-steps", "100000", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert not (run / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_second_preprocess_on_an_out_is_refused(tmp_path, corpus_file, tokenizer_dir):
    big = tmp_path / "big.txt"
    big.write_bytes(corpus_file.read_bytes() * 4)
    out = tmp_path / "ds"
    args = preprocess_args(big, tokenizer_dir, out, "--checkpoint-seconds", 0, "-q")
    proc = subprocess.Popen([sys.executable, "-m", "preprocess", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=subprocess_env())
    try:
        wait_until(lambda: (out / LOCK_NAME).exists() and (out / LOCK_NAME).read_text().strip(), proc)
        proc.send_signal(signal.SIGSTOP)  # frozen while it holds the lock: it cannot finish in between
        r = preprocess_cli(*args)
        assert r.exit_code == 2 and r.stderr.strip().splitlines() == [
            f"error: {out}: another preprocess (pid {proc.pid}) is writing here right now; wait for it to "
            "finish or stop it (one writer per directory)"], r.output
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert preprocess_cli(*args).exit_code == 0  # after the kill: resumed, no stale lock
    assert not (out / LOCK_NAME).exists()


@pytest.fixture
def read_only(tmp_path):
    """A read-only bind mount of a directory (needs root; skipped elsewhere)."""
    mounts = []

    def make(src: Path) -> Path:
        dst = tmp_path / f"ro{len(mounts)}"
        dst.mkdir()
        ok = subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True).returncode == 0
        if not ok:
            pytest.skip("a read-only bind mount needs root (mount --bind)")
        mounts.append(dst)
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(dst)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        return dst

    yield make
    for m in reversed(mounts):
        subprocess.run(["umount", str(m)], capture_output=True)


def test_training_reads_a_dataset_on_a_read_only_filesystem(train_valid, tmp_path, read_only):
    src = tmp_path / "src"
    shutil.copytree(train_valid, src)
    ro = read_only(src)
    with pytest.raises(OSError):
        (ro / "train" / "probe").write_text("x")  # really read-only
    run = tmp_path / "run"
    r = train_cli(*train_args(ro, run), "--max-steps", "3", "--warmup", "1", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert len([x for x in read(run / "metrics.jsonl") if "loss" in x]) == 3


def test_a_forked_child_does_not_keep_a_killed_parents_lock(tmp_path):
    """DataLoader workers are forked: when the training process is killed, a worker still alive
    (until its watchdog notices) must not hold the run's lock."""
    script = ("import os, sys, time\n"
              "from shards.lock import DirectoryLock\n"
              f"DirectoryLock({str(tmp_path)!r}, 'train').acquire()\n"
              "child = os.fork()\n"
              "if child == 0:\n"
              "    time.sleep(600)\n"
              "    os._exit(0)\n"
              "print(child, flush=True)\n"
              "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=subprocess_env())
    child = int(parent.stdout.readline())
    try:
        with pytest.raises(DirectoryBusyError):
            DirectoryLock(tmp_path, "train").acquire()  # the parent holds it
        parent.kill()
        parent.wait()
        assert os.path.exists(f"/proc/{child}")  # the child lives on ...
        with DirectoryLock(tmp_path, "train"):  # ... and holds nothing
            pass
    finally:
        os.kill(child, signal.SIGKILL)
