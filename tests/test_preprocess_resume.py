"""Kill `preprocess` anywhere, run it again: the same bytes as an uninterrupted run. And what an
existing output directory means: resume, already complete, or refused without --overwrite."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from itertools import count
from pathlib import Path

import pytest

import shards.writer
from shards import Dataset
from preprocess import encoding, pipeline
from preprocess.journal import WORK_DIR
from shards.layout import shard_name
from tests.conftest import preprocess_args
from tests.helpers import Killed, assert_clean_error, die_at_write, preprocess_cli, run_killed, tree_bytes

ROOT = Path(__file__).resolve().parents[1]


def _kill_at(monkeypatch, where: str, k: int) -> None:
    calls = count()
    if where == "batch":  # before the (k+1)-th batch's ids are written
        die_at_write(monkeypatch, k)
    elif where == "checkpoint":  # batch k+1 is in the shard files, the journal does not know it yet
        orig_checkpoint = encoding.Encoding._checkpoint

        def checkpoint(self, force=False):
            if not force and next(calls) == k:
                raise Killed
            return orig_checkpoint(self, force)

        monkeypatch.setattr(encoding.Encoding, "_checkpoint", checkpoint)
    elif where == "commit":  # shard k's document index is renamed into place, its tokens are not
        orig_replace = os.replace

        def replace(src, dst, **kw):
            if Path(dst).name == shard_name(k):
                raise Killed
            return orig_replace(src, dst, **kw)

        monkeypatch.setattr(os, "replace", replace)
    elif where == "manifest":  # every shard committed, no manifest yet
        def write_json_atomic(path, data):
            raise Killed

        monkeypatch.setattr(shards.writer, "write_json_atomic", write_json_atomic)
    else:
        raise ValueError(where)


def _interrupted(monkeypatch, args: list[str], where: str, k: int) -> None:
    run_killed(monkeypatch, args, lambda m: _kill_at(m, where, k))
    out = Path(args[args.index("--out") + 1])
    assert not (out / "manifest.json").exists()  # nothing looks complete after a crash


@pytest.mark.parametrize("where, k", [("batch", 0), ("batch", 3), ("checkpoint", 0), ("checkpoint", 4),
                                      ("commit", 2), ("commit", 21), ("manifest", 0)])
def test_resume_after_a_kill_gives_the_same_bytes(monkeypatch, tmp_path, corpus_file, tokenizer_dir,
                                                  sample_dataset, where, k):
    args = preprocess_args(corpus_file, tokenizer_dir, tmp_path / "ds", "--checkpoint-seconds", 0)
    _interrupted(monkeypatch, args, where, k)
    journal = json.loads((tmp_path / "ds" / WORK_DIR / "state.json").read_text())
    r = preprocess_cli(*args)
    assert r.exit_code == 0, r.output
    # It continues from the last checkpoint, when there was one, and says so (before and after).
    resumed = journal["cursor"] is not None
    assert ("(resumed: " in r.stdout) == resumed == ("resuming the interrupted run" in r.stderr)
    if resumed:  # this run's speed counts only what it encoded
        kept, now = re.search(r"resumed: ([\d,]+) tokens kept from the interrupted run, ([\d,]+) encoded now",
                              r.stdout).groups()
        assert int(kept.replace(",", "")) + int(now.replace(",", "")) == Dataset(tmp_path / "ds").num_tokens
        assert int(kept.replace(",", "")) > 0
    else:
        assert "continuing the interrupted run" in r.stderr and "with its tokenizer" in r.stderr
    assert tree_bytes(tmp_path / "ds") == tree_bytes(sample_dataset)


def test_killed_twice(monkeypatch, tmp_path, corpus_file, tokenizer_dir, sample_dataset):
    args = preprocess_args(corpus_file, tokenizer_dir, tmp_path / "ds", "--checkpoint-seconds", 0)
    _interrupted(monkeypatch, args, "batch", 2)
    _interrupted(monkeypatch, args, "checkpoint", 2)
    r = preprocess_cli(*args)
    assert r.exit_code == 0, r.output
    assert tree_bytes(tmp_path / "ds") == tree_bytes(sample_dataset)


@pytest.mark.parametrize("stage", ["import_tokenizer", "choose_engine"])
def test_killed_before_the_first_checkpoint(monkeypatch, tmp_path, corpus_file, tokenizer_dir, sample_dataset,
                                            stage):
    """Killed while the tokenizer is being saved or checked: nothing was done, so a rerun starts over."""
    args = preprocess_args(corpus_file, tokenizer_dir, tmp_path / "ds", "-q")
    target = pipeline.tk if stage == "import_tokenizer" else pipeline
    orig = getattr(target, stage)

    def dies(*a, **kw):
        orig(*a, **kw)  # the work is done (files written), then the process dies
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(target, stage, dies)
        assert isinstance(preprocess_cli(*args).exception, Killed)
    r = preprocess_cli(*args)
    assert r.exit_code == 0, r.output
    assert tree_bytes(tmp_path / "ds") == tree_bytes(sample_dataset)


def test_sigkill_then_rerun(tmp_path, corpus_file, tokenizer_dir):
    """A real process, SIGKILLed (workers included) once its first checkpoint is on disk."""
    big = tmp_path / "big.txt"
    big.write_bytes(corpus_file.read_bytes() * 3)  # ~20 batches: the kill lands mid-run
    ref = tmp_path / "ref"
    assert preprocess_cli(*preprocess_args(big, tokenizer_dir, ref, "-q")).exit_code == 0

    out = tmp_path / "ds"
    args = preprocess_args(big, tokenizer_dir, out, "--checkpoint-seconds", 0, "-q")
    args[args.index("--workers") + 1] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "preprocess", *args], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = out / WORK_DIR / "state.json"
    deadline = time.monotonic() + 120  # a guard against a hang, not a timing assertion
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if json.loads(state.read_text()).get("cursor"):
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.005)
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()!r}"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()

    r = preprocess_cli(*args[:-1])  # the same command (without -q, to see the summary)
    assert r.exit_code == 0, r.output
    assert "(resumed: " in r.stdout
    assert tree_bytes(out) == tree_bytes(ref)


def test_a_dead_worker_stops_the_run_instead_of_hanging(tmp_path, corpus_file, tokenizer_dir):
    """The OOM killer's view: one tokenizer worker SIGKILLed. One line, exit 1; the rerun resumes."""
    from benchmarks.common import tree

    big = tmp_path / "big.txt"
    big.write_bytes(corpus_file.read_bytes() * 3)
    out = tmp_path / "ds"
    args = preprocess_args(big, tokenizer_dir, out, "--checkpoint-seconds", 0, "-q")
    args[args.index("--workers") + 1] = "2"
    proc = subprocess.Popen([sys.executable, "-m", "preprocess", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # a guard against a hang, not a timing assertion
    victim = None
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        for pid in tree(proc.pid)[1:]:
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes() and (out / WORK_DIR / "state.json").exists():
                    victim = pid
            except OSError:
                pass
        time.sleep(0.01)
    if victim is None:
        proc.kill()
        pytest.skip("the run ended before a worker could be killed")
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the killed worker had no task left")
    assert proc.returncode == 1, err
    assert "worker process died" in err and "Traceback" not in err
    r = preprocess_cli(*args)
    assert r.exit_code == 0, r.output


# -- what an existing --out means --------------------------------------------------------------

def test_same_command_on_a_complete_dataset(tmp_path, slice_file, tokenizer_dir):
    args = preprocess_args(slice_file, tokenizer_dir, tmp_path / "ds", "--shard-tokens", 3000)
    assert preprocess_cli(*args).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ds").rglob("*")}
    r = preprocess_cli(*args)
    assert r.exit_code == 0, r.output
    assert "already complete" in r.stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ds").rglob("*")} == before
    # The number of workers is not part of the command's identity: still complete.
    args[args.index("--workers") + 1] = "2"
    assert "already complete" in preprocess_cli(*args).stdout


def test_different_command_is_refused_unless_overwrite(tmp_path, slice_file, tokenizer_dir):
    out = tmp_path / "ds"
    assert preprocess_cli(*preprocess_args(slice_file, tokenizer_dir, out)).exit_code == 0
    before = tree_bytes(out)
    other = preprocess_args(slice_file, tokenizer_dir, out, "--shard-tokens", 3000, "-q")
    line = assert_clean_error(preprocess_cli(*other), 2)
    assert "--overwrite" in line and str(out) in line
    assert tree_bytes(out) == before
    r = preprocess_cli(*other, "--overwrite")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "manifest.json").read_text())["settings"]["shard_tokens"] == 3000


def test_interrupted_run_of_another_command_is_refused(monkeypatch, tmp_path, corpus_file, tokenizer_dir,
                                                       sample_dataset):
    out = tmp_path / "ds"
    args = preprocess_args(corpus_file, tokenizer_dir, out, "--checkpoint-seconds", 0)
    _interrupted(monkeypatch, args, "batch", 2)
    other = preprocess_args(corpus_file, tokenizer_dir, out, "--no-eos", "-q")
    line = assert_clean_error(preprocess_cli(*other), 2)
    assert "interrupted run of a different command" in line and "--overwrite" in line
    assert preprocess_cli(*args).exit_code == 0  # the original command still resumes
    assert tree_bytes(out) == tree_bytes(sample_dataset)


@pytest.mark.parametrize("older", [{"format": None}, {"format": None, "engine": "sentencepiece"}])
def test_interrupted_run_of_an_older_version_is_refused(monkeypatch, tmp_path, slice_file, tokenizer_dir, older):
    """A journal preprocess cannot read (no format number, or an engine written as a bare name)
    is refused with one line, not misread or a traceback; --overwrite starts over."""
    out = tmp_path / "ds"
    args = preprocess_args(slice_file, tokenizer_dir, out, "--checkpoint-seconds", 0, "-q")
    _interrupted(monkeypatch, args, "batch", 1)
    journal = out / WORK_DIR / "state.json"
    state = json.loads(journal.read_text())
    state.update(older)
    if state["format"] is None:
        del state["format"]
    journal.write_text(json.dumps(state))
    line = assert_clean_error(preprocess_cli(*args), 2)
    assert line == (f"error: --out {out}: holds an interrupted run of another preprocess version, which this one "
                    "cannot resume; pass --overwrite to start over")
    assert preprocess_cli(*args, "--overwrite").exit_code == 0
    assert Dataset(out).num_documents == 300


def test_foreign_directory_is_refused(tmp_path, slice_file, tokenizer_dir):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    line = assert_clean_error(preprocess_cli(*preprocess_args(slice_file, tokenizer_dir, out, "-q")), 2)
    assert "not empty" in line
    r = preprocess_cli(*preprocess_args(slice_file, tokenizer_dir, out, "-q", "--overwrite"))
    assert r.exit_code == 0, r.output
    assert (out / "notes.txt").read_text() == "keep me"  # --overwrite removes only what preprocess writes


def test_overwrite_never_deletes_inputs_or_unrelated_files(tmp_path, slice_file, tokenizer_dir):
    data = tmp_path / "data"
    data.mkdir()
    corpus = data / "train.txt"  # the tutorial's layout: the corpus beside where output goes
    corpus.write_bytes(slice_file.read_bytes())
    (data / "train_notes.md").write_text("mine")
    (data / "tokenizer_backup").mkdir()
    r = preprocess_cli(*preprocess_args(corpus, tokenizer_dir, data, "--overwrite"))
    assert "contains the input" in assert_clean_error(r, 2)
    assert corpus.exists()
    out = tmp_path / "out"
    out.mkdir()
    (out / "train_notes.md").write_text("mine")
    (out / "shard_notes.txt").write_text("mine")
    r = preprocess_cli(*preprocess_args(corpus, tokenizer_dir, out, "--overwrite"))
    assert r.exit_code == 0, r.output
    r = preprocess_cli(*preprocess_args(corpus, tokenizer_dir, out, "--overwrite", "--shard-tokens", 999))
    assert r.exit_code == 0, r.output
    assert (out / "train_notes.md").read_text() == "mine" and (out / "shard_notes.txt").read_text() == "mine"
