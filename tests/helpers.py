"""Helpers shared by the shards and preprocess tests: running the CLIs, reading datasets back."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def preprocess_cli(*args: object):
    """Run `preprocess ARGS...` in this process (click's CliRunner); returns the click Result."""
    from click.testing import CliRunner

    from preprocess.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def shards_cli(*args: object):
    from click.testing import CliRunner

    from shards.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_error(result, code: int | None = None) -> str:
    """The command failed the way a user mistake should: a non-zero exit (or exactly `code`),
    one `error: ...` line on stderr, no traceback. Returns that line."""
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}\n{result.output}"
    assert result.exit_code != 0
    if code is not None:
        assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under root by relative path: two datasets are identical when these are equal."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def stream(path: Path) -> np.ndarray:
    from shards import Dataset

    ds = Dataset(path)
    return ds.read(0, ds.num_tokens)


def documents(path: Path, *, drop_eos: bool = True) -> list[tuple[int, ...]]:
    """Each document's ids, without its trailing EOS when the dataset separates documents with one."""
    from shards import Dataset

    ds = Dataset(path)
    cut = 1 if drop_eos and ds.manifest.eos_separates_documents else 0
    out = []
    for d in range(ds.num_documents):
        ids = ds.document(d).tolist()
        if cut:
            assert ids[-1] == ds.eos_id
        out.append(tuple(ids[:len(ids) - cut]))
    return out


def write_lines(path: Path, lines: list[str], eol: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + eol for line in lines).encode("utf-8"))
    return path


class Killed(Exception):
    """Stands for the process dying at this exact point (raised from a patched function)."""


def die_at_write(monkeypatch, k: int) -> None:
    """Make `preprocess` die just before it writes the ids of its (k+1)-th block."""
    from itertools import count

    from preprocess import encoding

    calls = count()
    orig = encoding.Encoding._write

    def write(self, *args):
        if next(calls) == k:
            raise Killed
        return orig(self, *args)

    monkeypatch.setattr(encoding.Encoding, "_write", write)


def run_killed(monkeypatch, args, die) -> None:
    """Run `preprocess ARGS...` in this process with `die(monkeypatch)` in effect: it must die."""
    with monkeypatch.context() as m:
        die(m)
        r = preprocess_cli(*args)
    assert isinstance(r.exception, Killed), r.output
