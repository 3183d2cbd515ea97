"""A run's life around the happy path: final/ after a kill, non-finite losses, honest metrics,
checkpoints that cannot be trusted, evaluation-only runs, failing before torch loads."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import train_args
from tests.train_helpers import (evals, files_under, losses, one_error_line, reference_run, same_final_weights,
                                 subprocess_env, train_cli)
from train.metrics import read

COMMON = ("--max-steps", "4", "--checkpoint-every", "2", "--eval-every", "2")


@pytest.fixture(scope="module")
def straight(train_valid, tmp_path_factory) -> Path:
    """The uninterrupted run the others must match."""
    return reference_run(train_valid, tmp_path_factory, *COMMON)


SIX = ("--max-steps", "6", "--checkpoint-every", "2", "--eval-every", "2")


@pytest.fixture(scope="module")
def six_steps(train_valid, tmp_path_factory) -> Path:
    """A run stopped at step 4 of these 6 is unfinished: resuming it must load its checkpoint."""
    return reference_run(train_valid, tmp_path_factory, *SIX)


# -- final/ is never lost or half-present --------------------------------------------------------

DYING = """
import os, sys
import train.checkpoint as c
where = os.environ["DIE_AT"]
write_final, mark_complete = c.Checkpointer.write_final, c.mark_complete
def dying_write(self, fill, step, need=0):
    def fill_then_die(tmp):
        fill(tmp)
        if where == "fill":  # the model and tokenizer are in the temp dir: killed before the rename
            os._exit(137)
    return write_final(self, fill_then_die, step, need)
def dying_mark(directory, text):
    if where == "mark" and directory.name == "final":  # renamed into place, killed before the marker
        os._exit(137)
    return mark_complete(directory, text)
c.Checkpointer.write_final = dying_write
c.mark_complete = dying_mark
from train.cli import main
main()
"""


@pytest.mark.parametrize("die_at", ["fill", "mark"])
def test_a_kill_while_final_is_written_is_recovered_by_resume(train_valid, straight, tmp_path, die_at):
    run = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", DYING, *train_args(train_valid, run), *COMMON],
                            capture_output=True, text=True, env={**subprocess_env(), "DIE_AT": die_at}, timeout=300)
    assert killed.returncode == 137, killed.stdout + killed.stderr
    assert not (run / "final" / "COMPLETE").exists()
    assert (run / "final").exists() == (die_at == "mark")
    resumed = train_cli("--out", run, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "missing or incomplete: writing it now" in resumed.output
    assert (run / "final" / "COMPLETE").is_file() and not (run / ".final.tmp").exists()
    assert same_final_weights(run, straight)
    again = train_cli("--out", run, "--resume")
    assert again.exit_code == 0 and "already finished" in again.output


# -- a non-finite loss stops the run -------------------------------------------------------------

@pytest.mark.parametrize("bad_step, value, log_every, ckpt_every, eval_every, detected", [
    (5, float("nan"), "3", "2", "100", 6),  # caught at the log step 6, before its checkpoint
    (4, float("inf"), "5", "2", "100", 4),  # caught at the checkpoint step 4, between log steps
    (3, float("nan"), "5", "6", "2", 4),  # caught at the evaluation of step 4: no NaN eval is logged
])
def test_non_finite_loss_stops_naming_the_step_and_saves_nothing(train_valid, tmp_path, monkeypatch, bad_step, value,
                                                                 log_every, ckpt_every, eval_every, detected):
    import train.loop

    real, calls = train.loop.next_token_loss, []

    def poisoned(logits, labels):
        calls.append(1)
        loss = real(logits, labels)
        return loss * value if len(calls) == bad_step else loss

    monkeypatch.setattr(train.loop, "next_token_loss", poisoned)
    run = tmp_path / "run"
    r = train_cli(*train_args(train_valid, run), "--max-steps", "10", "--log-every", log_every,
                  "--checkpoint-every", ckpt_every, "--eval-every", eval_every)
    assert r.exit_code == 1
    line = one_error_line(r)
    good = (bad_step - 1) // int(ckpt_every) * int(ckpt_every)
    assert line.startswith(f"error: step {bad_step}: the training loss (or its gradient) is not finite")
    if good:
        assert f"the newest good checkpoint is {run / 'checkpoints' / f'step_{good:08d}'}" in line
        saved = sorted(int(p.name[5:]) for p in (run / "checkpoints").iterdir())
        assert saved and max(saved) == good < bad_step  # nothing at or after the bad step
    else:
        assert "no checkpoint was written before it" in line and not (run / "checkpoints").exists()
    for rec in read(run / "metrics.jsonl"):
        assert all(math.isfinite(v) for v in rec.values() if isinstance(v, float)), rec
        assert rec["step"] < detected


# -- honest metrics ------------------------------------------------------------------------------

def test_throughput_leaves_the_pauses_out():
    from train.meter import Throughput

    now = [0.0]
    meter = Throughput(clock=lambda: now[0])
    now[0] += 2.0  # two seconds of steps
    meter.add(1000)
    with meter.paused() as took:
        now[0] += 100.0  # an evaluation
    assert took() == 100.0
    with meter.waiting():
        now[0] += 1.0  # waiting for a batch is training time, and data wait
    reading = meter.take()
    assert (reading.seconds, reading.tokens, reading.data_wait) == (3.0, 1000, 1.0)
    assert reading.tokens_per_s == pytest.approx(1000 / 3) and reading.wait_share == pytest.approx(1 / 3)
    assert meter.take().tokens == 0  # each reading starts a new window


def test_logged_rates_exclude_eval_and_checkpoint_time(train_valid, tmp_path, monkeypatch):
    """On a clock where each training step takes 10 ms and every evaluation and checkpoint
    1,000 s, every logged rate must be the same: the pauses are out of the windows."""
    import train.loop
    from train.meter import Throughput

    now = [0.0]

    def taking(seconds, real):
        def wrapper(*args, **kwargs):
            now[0] += seconds
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(train.loop, "Throughput", lambda: Throughput(clock=lambda: now[0]))
    monkeypatch.setattr(train.loop, "train_step", taking(0.01, train.loop.train_step))
    monkeypatch.setattr(train.loop, "evaluate", taking(1000.0, train.loop.evaluate))
    monkeypatch.setattr(train.loop, "save_checkpoint", taking(1000.0, train.loop.save_checkpoint))
    run = tmp_path / "run"
    r = train_cli(*train_args(train_valid, run), "--max-steps", "8", "--log-every", "2", "--eval-every", "2",
                  "--checkpoint-every", "2")
    assert r.exit_code == 0, r.output
    records = read(run / "metrics.jsonl")
    steps = [x for x in records if "loss" in x]
    assert len(steps) == 4 and all(x["train_seconds"] == pytest.approx(0.02) for x in steps), steps
    assert {x["tokens_per_s"] for x in steps} == {2 * 4 * 32 / 0.02}  # no window carries an eval or a checkpoint
    assert all("eval_seconds" in x for x in records if "eval_loss" in x)
    assert [x["step"] for x in records if "checkpoint" in x] == [2, 4, 6, 8]
    assert all(x["checkpoint_seconds"] >= 0 for x in records if "checkpoint" in x)


# -- checkpoints that cannot be trusted ----------------------------------------------------------

class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _break(ckpt: Path, how: str, marker: Path) -> None:
    meta_path, state = ckpt / "meta.json", ckpt / "state.pt"
    meta = json.loads(meta_path.read_text())
    if how == "pickled callable":
        torch.save({"model": _Payload(str(marker)), "optimizer": {}, "ranks": []}, state)
        meta["files"]["state.pt"] = state.stat().st_size  # the size check passes: the unpickler must refuse
    elif how == "truncated":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif how == "truncated, size edited too":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
        meta["files"]["state.pt"] = state.stat().st_size
    elif how == "meta not json":
        meta_path.write_text("{ nonsense")
        return
    elif how == "meta nonsense":
        meta["layout"] = "everything"
    elif how == "step disagrees with its name":
        meta["step"] = 3
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("how, says", [
    ("pickled callable", "refusing to unpickle it"),
    ("truncated", "truncated or replaced"),
    ("truncated, size edited too", "unreadable"),
    ("meta not json", "meta.json is not valid JSON"),
    ("meta nonsense", "has no layout"),
    ("step disagrees with its name", "says step 3, its directory name says 4"),
])
def test_an_unusable_newest_checkpoint_is_refused_and_the_way_back_works(train_valid, six_steps, tmp_path, how, says):
    run = tmp_path / "run"
    assert train_cli(*train_args(train_valid, run), *SIX, "--stop-at", "4").exit_code == 0
    newest = run / "checkpoints" / "step_00000004"
    marker = tmp_path / "code-ran"
    _break(newest, how, marker)
    before = files_under(run)
    line = one_error_line(train_cli("--out", run, "--resume", "-q"))
    assert line.startswith(f"error: {newest}: ") and says in line, line
    assert "the previous complete checkpoint is step_00000002" in line
    assert not marker.exists()  # the pickled callable never ran
    assert files_under(run) == before  # nothing deleted or written
    aside = line.split("(mv ")[1].split(")")[0].split()
    os.rename(aside[0], aside[1])  # the advice, followed
    resumed = train_cli("--out", run, "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert losses(run) == losses(six_steps)


# -- evaluation only -----------------------------------------------------------------------------

def test_eval_only_evaluates_final_a_checkpoint_or_a_run_and_writes_nothing(train_valid, straight, tmp_path):
    last_eval = evals(straight)[-1][1]
    before = files_under(straight.parent)
    for target in (straight / "final", straight / "checkpoints" / "step_00000004", straight):
        r = train_cli("--eval-only", "--init-from", target, "--valid", train_valid / "valid", "--block-size", "32",
                      "--eval-blocks", "16", "--batch-size", "4", "--workers", "0")
        assert r.exit_code == 0, r.output
        line = r.stdout.strip().splitlines()[-1]
        assert line.startswith("eval loss ") and " | ppl " in line and str(train_valid / "valid") in line
        loss = float(line.split()[2])
        assert loss == pytest.approx(last_eval, abs=1e-4)  # the run's own last evaluation
    assert files_under(straight.parent) == before
    missing = train_cli("--eval-only", "--init-from", straight)
    assert "--eval-only needs --valid DIR" in one_error_line(missing)


# -- failing fast: what the manifests and flags decide comes before torch loads --------------------

FAST = """
import sys
from train.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    print("exit", e.code, "torch loaded" if "torch" in sys.modules else "torch not loaded")
"""


def test_refusals_that_need_no_torch_come_before_it_loads(train_valid, straight, tmp_path):
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    cases = [
        ["--data", incomplete, "--out", tmp_path / "r1"],
        [*train_args(train_valid, tmp_path / "r2"), "--block-size", "4096"],
        [*train_args(train_valid, straight), "--max-steps", "4"],  # checkpoints there, no --resume
        ["--out", straight, "--resume", "--data", train_valid / "valid"],  # another fingerprint
        ["--out", straight, "--resume", "--max-steps", "9"],  # another schedule
        [*train_args(train_valid, tmp_path / "r3"), "--batch-size", "100000"],  # no whole step in the data
        ["--data", train_valid / "train", "--out", tmp_path / "r4", "--max-steps", "5"],  # --warmup 100 >= 5
    ]
    for args in cases:
        r = subprocess.run([sys.executable, "-c", FAST, *map(str, args)], capture_output=True, text=True,
                           env=subprocess_env(), timeout=120)
        assert r.stdout.strip().splitlines()[-1] in ("exit 1 torch not loaded", "exit 2 torch not loaded"), \
            (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: "), r.stderr
