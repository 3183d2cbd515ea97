"""`train --resume` rules: data by fingerprint wherever it lies, a fixed schedule, the global batch."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import train_args
from tests.train_helpers import losses, one_error_line, reference_run, train_cli
from train.metrics import read
from train.schedule import lr_at

COMMON = ("--max-steps", "8", "--checkpoint-every", "2", "--eval-every", "4")


@pytest.fixture(scope="module")
def straight(train_valid, tmp_path_factory) -> Path:
    """8 steps without a stop: what every resumed run below must reproduce."""
    return reference_run(train_valid, tmp_path_factory, *COMMON)


def test_resume_finds_the_data_by_fingerprint_wherever_it_now_is(train_valid, straight, tmp_path, monkeypatch):
    """./x vs x, moved, copied elsewhere, behind a symlink, absolute vs relative: the same run."""
    shutil.copytree(train_valid, tmp_path / "first")
    monkeypatch.chdir(tmp_path)
    first = train_cli(*train_args(Path("first"), Path("run"), *COMMON, "--stop-at", "2"))
    assert first.exit_code == 0, first.output
    steps = [("./first", "4")]  # the same directory spelled differently
    for where, stop in steps:
        r = train_cli("--out", "run", "--resume", "--stop-at", stop, "--data", f"{where}/train", "--valid",
                      f"{where}/valid", "-q")
        assert r.exit_code == 0, r.output
    shutil.move(tmp_path / "first", tmp_path / "moved")  # the old place is gone
    gone = train_cli("--out", "run", "--resume", "-q")  # the saved paths no longer exist: one clear line
    assert "no such dataset directory" in one_error_line(gone)
    r = train_cli("--out", "run", "--resume", "--stop-at", "6", "--data", str(tmp_path / "moved" / "train"),
                  "--valid", str(tmp_path / "moved" / "valid"), "-q")  # absolute, after a move
    assert r.exit_code == 0, r.output
    os.symlink(tmp_path / "moved", tmp_path / "link")
    r = train_cli("--out", "run", "--resume", "--data", "link/train", "--valid", "link/valid", "-q")
    assert r.exit_code == 0, r.output
    assert losses(tmp_path / "run") == losses(straight)  # bit for bit, through every move


def test_other_data_is_refused_naming_both_fingerprints_unless_allowed(train_valid, tmp_path):
    run = tmp_path / "run"
    assert train_cli(*train_args(train_valid, run), *COMMON, "--stop-at", "2").exit_code == 0
    theirs = json.loads((train_valid / "train" / "manifest.json").read_text())["fingerprint"]
    other = tmp_path / "other"  # real, different tokens with the same tokenizer: the validation split
    shutil.copytree(train_valid / "valid", other)
    ours = json.loads((other / "manifest.json").read_text())["fingerprint"]
    line = one_error_line(train_cli("--out", run, "--resume", "--data", other, "-q"))
    assert f"--data {other}: fingerprint {ours} differs from {theirs}" in line and "--allow-data-change" in line
    allowed = train_cli("--out", run, "--resume", "--data", other, "--allow-data-change", "--stop-at", "4")
    assert allowed.exit_code == 0, allowed.output
    assert "resuming on changed data" in allowed.output
    meta = json.loads((run / "checkpoints" / "step_00000004" / "meta.json").read_text())
    assert meta["fingerprints"]["data"] == [ours] and meta["step"] == 4
    assert sorted(losses(run)) == [1, 2, 3, 4]


@pytest.mark.parametrize("flag, value", [("--max-steps", "16"), ("--lr", "1e-3"), ("--warmup", "3"),
                                         ("--min-lr-ratio", "0.5")])
def test_schedule_changes_on_resume_are_refused_with_the_way_to_train_further(train_valid, tmp_path, flag, value):
    run = tmp_path / "run"
    assert train_cli(*train_args(train_valid, run), *COMMON, "--stop-at", "4").exit_code == 0
    line = one_error_line(train_cli("--out", run, "--resume", flag, value, "-q"))
    key = flag[2:].replace("-", "_")
    assert f"--resume: {key} differs from the run's" in line and f"--init-from {run}" in line
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]


def test_resumed_learning_rates_are_the_schedules_own(train_valid, straight, tmp_path):
    run = tmp_path / "run"
    assert train_cli(*train_args(train_valid, run), *COMMON, "--stop-at", "3").exit_code == 0
    assert train_cli("--out", run, "--resume", "-q").exit_code == 0
    cfg = json.loads((run / "config.json").read_text())
    sched = {k: cfg[k] for k in ("lr", "warmup", "max_steps", "min_lr_ratio")}
    for r in (straight, run):
        logged = [(rec["step"], rec["lr"]) for rec in read(r / "metrics.jsonl") if "loss" in rec]
        assert logged == [(s, lr_at(s - 1, **sched)) for s in range(1, 9)]  # the lr the logged step used


def test_a_finished_run_says_how_to_go_on_and_that_way_works(train_valid, straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    done = train_cli("--out", run, "--resume")
    assert done.exit_code == 0, done.output
    assert "already finished at step 8" in done.output and f"--init-from {run / 'final'}" in done.output
    assert "differs from the run's" in one_error_line(train_cli("--out", run, "--resume", "--max-steps", "16", "-q"))
    further = train_cli(*train_args(train_valid, tmp_path / "next"), "--init-from", run / "final", "--max-steps", "4")
    assert further.exit_code == 0, further.output
    assert sorted(losses(tmp_path / "next")) == [1, 2, 3, 4]
    assert losses(tmp_path / "next")[1] < losses(straight)[1]  # it starts from the trained weights


@pytest.mark.parametrize("before, after", [(("4", "1"), ("2", "2")), (("2", "2"), ("4", "1"))])
def test_the_global_batch_may_be_split_anew_on_resume(train_valid, tmp_path, before, after):
    """batch x accumulation 4 x 1 <-> 2 x 2: the same blocks per step, losses equal to float rounding."""
    common = ("--max-steps", "6", "--checkpoint-every", "3", "--eval-every", "3")
    ref, run = tmp_path / "ref", tmp_path / "run"
    b0, a0 = before
    b1, a1 = after
    assert train_cli(*train_args(train_valid, ref), *common, "--batch-size", b0, "--grad-accum", a0).exit_code == 0
    assert train_cli(*train_args(train_valid, run), *common, "--batch-size", b0, "--grad-accum", a0,
                     "--stop-at", "3").exit_code == 0
    resumed = train_cli("--out", run, "--resume", "--batch-size", b1, "--grad-accum", a1)
    assert resumed.exit_code == 0, resumed.output
    assert f"the same {4} blocks per step" in resumed.output
    a, b = losses(ref), losses(run)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert [a[s] for s in range(1, 4)] == [b[s] for s in range(1, 4)]  # before the stop: the same run
    assert [b[s] for s in range(4, 7)] == pytest.approx([a[s] for s in range(4, 7)], rel=1e-5, abs=1e-6)


def test_another_global_batch_is_refused_naming_the_product(train_valid, tmp_path):
    run = tmp_path / "run"
    assert train_cli(*train_args(train_valid, run), *COMMON, "--stop-at", "2").exit_code == 0
    line = one_error_line(train_cli("--out", run, "--resume", "--batch-size", "2", "-q"))
    assert "world_size x batch_size x grad_accum must stay 4 (the run's 1 x 4 x 1), now 1 x 2 x 1 = 2" in line


@pytest.mark.parametrize("key, value", [("block_size", 16), ("seed", 7)])
def test_data_order_changes_are_refused(train_valid, tmp_path, key, value):
    run = tmp_path / "run"
    assert train_cli(*train_args(train_valid, run), *COMMON, "--stop-at", "2").exit_code == 0
    line = one_error_line(train_cli("--out", run, "--resume", f"--{key.replace('_', '-')}", value, "-q"))
    assert f"--resume: {key} differs from the run's" in line


def test_a_resume_continues_its_own_model_whatever_it_started_from(train_valid, tmp_path):
    """The shape comes from the checkpoint: a moved --model JSON or a deleted --init-from
    directory does not matter, another --model is refused."""
    import json as _json

    shape = tmp_path / "shape.json"
    shape.write_text(_json.dumps({"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 64}))
    run = tmp_path / "run"
    assert train_cli(*train_args(train_valid, run), *COMMON, "--model", shape, "--stop-at", "2").exit_code == 0
    shape.rename(tmp_path / "moved.json")
    assert train_cli("--out", run, "--resume", "--stop-at", "4", "-q").exit_code == 0
    line = one_error_line(train_cli("--out", run, "--resume", "--model", "gpt2-mini", "-q"))
    assert "--resume: model differs from the run's" in line and "--init-from" in line
    source = tmp_path / "source"  # a run started from another run's weights, which are then deleted
    assert train_cli(*train_args(train_valid, source), "--max-steps", "3", "--warmup", "1").exit_code == 0
    child = tmp_path / "child"
    assert train_cli(*train_args(train_valid, child), *COMMON, "--init-from", source / "final",
                     "--stop-at", "2").exit_code == 0
    shutil.rmtree(source)
    resumed = train_cli("--out", child, "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert sorted(losses(child)) == list(range(1, 9))


def test_allow_data_change_never_allows_another_tokenizer(train_valid, tmp_path, corpus_lines):
    from preprocess.config import PreprocessConfig
    from preprocess.pipeline import run as preprocess

    run = tmp_path / "run"
    assert train_cli(*train_args(train_valid, run), *COMMON, "--stop-at", "2").exit_code == 0
    text = tmp_path / "v.txt"
    text.write_text("\n".join(corpus_lines[:600]) + "\n", encoding="utf-8")
    preprocess(PreprocessConfig(inputs=(str(text),), out=tmp_path / "other", vocab_size=1000, character_coverage=0.98,
                                workers=0, quiet=True), say=lambda s: None)
    line = one_error_line(train_cli("--out", run, "--resume", "--data", tmp_path / "other", "--valid",
                                    tmp_path / "other", "--allow-data-change", "-q"))
    assert "--resume: the datasets were tokenized with another tokenizer" in line
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002"]


def test_dropout_resumes_bit_for_bit(train_valid, tmp_path):
    """RNG states are part of the state, and nothing draws from them at a point a resumed run
    skips (the DataLoader's base seed has a generator of its own)."""
    common = (*COMMON, "--dropout", "0.1", "--workers", "2")
    a, b = tmp_path / "a", tmp_path / "b"
    assert train_cli(*train_args(train_valid, a), *common).exit_code == 0
    assert train_cli(*train_args(train_valid, b), *common, "--stop-at", "4").exit_code == 0
    assert train_cli("--out", b, "--resume", "-q").exit_code == 0
    assert losses(a) == losses(b) and len(losses(a)) == 8


def test_optimizer_settings_given_on_resume_are_the_ones_used(train_valid, tmp_path):
    import torch

    run = tmp_path / "run"
    assert train_cli(*train_args(train_valid, run), *COMMON, "--stop-at", "2").exit_code == 0
    r = train_cli("--out", run, "--resume", "--weight-decay", "0", "--beta2", "0.99", "--stop-at", "4", "-q")
    assert r.exit_code == 0, r.output
    saved = torch.load(run / "checkpoints" / "step_00000004" / "state.pt", weights_only=True)
    groups = saved["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.0, 0.0] and all(g["betas"] == (0.9, 0.99) for g in groups)


def test_precision_may_change_on_resume(train_valid, tmp_path):
    """fp32 -> fp16 (a grad scaler that has no saved state) and back: no crash, training goes on."""
    run = tmp_path / "run"
    assert train_cli(*train_args(train_valid, run), *COMMON, "--stop-at", "2").exit_code == 0
    r = train_cli("--out", run, "--resume", "--precision", "fp16", "--stop-at", "4", "-q")
    assert r.exit_code == 0, r.output
    r = train_cli("--out", run, "--resume", "--precision", "fp32", "-q")
    assert r.exit_code == 0, r.output
    assert sorted(losses(run)) == list(range(1, 9))
