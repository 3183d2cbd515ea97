"""`train` on a full disk: a checkpoint or final/ that does not fit stops the run with one line
naming the path and the space needed, leaves nothing that looks complete, and `--resume` after
space is freed ends with the weights of an uninterrupted run. Runs on a small tmpfs
(tests/tmpfs.py); skipped, saying why, where one cannot be mounted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import train_args
from tests.tmpfs import small_disk  # noqa: F401  (the fixture)
from tests.train_helpers import losses, one_error_line, reference_run, same_final_weights, train_cli

COMMON = ("--max-steps", "4", "--checkpoint-every", "2", "--eval-every", "100", "--keep", "2")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def straight(train_valid, tmp_path_factory) -> Path:
    """The uninterrupted run the others must match."""
    return reference_run(train_valid, tmp_path_factory, *COMMON)


def test_a_checkpoint_that_does_not_fit_stops_the_run_and_resume_finishes_it(train_valid, straight, small_disk):
    ckpt = _size(straight / "checkpoints" / "step_00000004")
    disk = small_disk(64 << 20)
    run = disk.path / "run"
    disk.fill(leave=int(1.5 * ckpt))  # the checkpoint of step 2 fits, the one of step 4 does not
    r = train_cli(*train_args(train_valid, run), *COMMON)
    assert r.exit_code == 1
    line = one_error_line(r)
    tmp = run / "checkpoints" / ".step_00000004.tmp"
    assert line.startswith(f"error: {tmp}: no space left on device (needed in all: "), line
    assert (f"the checkpoint of step 4 was not kept; the newest complete checkpoint is "
            f"{run / 'checkpoints' / 'step_00000002'}: free space and run `train --out {run} --resume`") in line
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002"]  # no temp left behind
    assert not (run / "final").exists()
    disk.unfill()
    resumed = train_cli("--out", run, "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert losses(run) == losses(straight) and same_final_weights(run, straight)


def test_a_final_that_does_not_fit_is_written_by_resume_after_space_is_freed(train_valid, straight, small_disk):
    ckpt, final = _size(straight / "checkpoints" / "step_00000004"), _size(straight / "final")
    disk = small_disk(64 << 20)
    run = disk.path / "run"
    args = (*train_args(train_valid, run), "--max-steps", "2", "--warmup", "1", "--checkpoint-every", "2",
            "--eval-every", "100")
    disk.fill(leave=ckpt + final // 3)  # the checkpoint of step 2 fits, final/ does not
    r = train_cli(*args)
    assert r.exit_code == 1
    line = one_error_line(r)
    assert line.startswith(f"error: {run / '.final.tmp'}: no space left on device (needed in all: "), line
    assert f"{run / 'final'} was not written; free space and run `train --out {run} --resume`" in line
    assert not (run / "final").exists() and not (run / ".final.tmp").exists()
    disk.unfill()
    resumed = train_cli("--out", run, "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert (run / "final" / "COMPLETE").is_file()
    reference = train_cli(*train_args(train_valid, disk.path / "ref"), "--max-steps", "2", "--warmup", "1",
                          "--checkpoint-every", "2", "--eval-every", "100")
    assert reference.exit_code == 0 and same_final_weights(run, disk.path / "ref")
