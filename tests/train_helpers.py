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
