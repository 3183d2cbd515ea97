"""Helpers shared by the `train` tests: run the command in this process, read what a run wrote."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from train.metrics import read


def train_cli(*args: object):
    from train.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read(run / "metrics.jsonl") if "loss" in r}


def evals(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["eval_loss"]) for r in read(run / "metrics.jsonl") if "eval_loss" in r]


def one_error_line(result) -> str:
    """The command failed cleanly: non-zero exit, exactly one `error: ...` line, no traceback."""
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}\n{result.output}"
    assert result.exit_code != 0, result.output
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def files_under(root: Path) -> dict[str, int]:
    """Every file under root with its size: what a command that writes nothing must not change."""
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def reference_run(train_valid: Path, tmp_path_factory, *args: object) -> Path:
    """An uninterrupted run of `tests.conftest.train_args` + args: what stopped and resumed runs match."""
    from tests.conftest import train_args

    run = tmp_path_factory.mktemp("straight") / "run"
    r = train_cli(*train_args(train_valid, run), *args)
    assert r.exit_code == 0, r.output
    return run


def same_final_weights(a: Path, b: Path) -> bool:
    """Two runs released bit-identical weights."""
    import torch
    from safetensors.torch import load_file

    x, y = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def subprocess_env() -> dict[str, str]:
    """For `python -m train` / torchrun in a subprocess: this checkout first, one thread each."""
    import os

    root = Path(__file__).resolve().parents[1]
    return {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}


def wait_until(cond, proc, timeout: float = 120) -> None:
    """Poll `cond()` while the subprocess `proc` runs; fail if it exits first or makes no progress.
    The timeout is a guard against a hang, not a timing assertion."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no progress")
