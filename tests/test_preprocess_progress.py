"""The progress bar of a resumed run starts where the interrupted run stopped: the bytes done
before count towards the total (`Progress(initial=...)`), never towards this run's rate or ETA,
and the bar ends at exactly the total."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from preprocess import encoding
from shards.console import Progress
from tests.conftest import preprocess_args
from tests.helpers import die_at_write, preprocess_cli, run_killed, write_lines


@pytest.fixture
def bars(monkeypatch):
    made: list[Progress] = []

    class Spy(Progress):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.created_with = kw.get("initial", 0)
            made.append(self)

    monkeypatch.setattr(encoding, "Progress", Spy)
    return made


def _kill_then_resume(monkeypatch, args, k: int) -> dict:
    run_killed(monkeypatch, args, lambda m: die_at_write(m, k))
    out = args[args.index("--out") + 1]
    state = json.loads((Path(out) / ".preprocess" / "state.json").read_text())
    r = preprocess_cli(*args)
    assert r.exit_code == 0, r.output
    return state["cursor"]


def _files(tmp_path, corpus_lines, kind: str):
    text = write_lines(tmp_path / "in" / "a.txt", corpus_lines[:600])
    write_lines(tmp_path / "in" / "b.txt", corpus_lines[600:1200])
    if kind == "gzip":
        gz = tmp_path / "in" / "a.txt.gz"
        gz.write_bytes(gzip.compress(text.read_bytes(), mtime=0))
        text.unlink()
    if kind == "parquet":
        pytest.importorskip("pyarrow")
        from tests.columnar_files import write_parquet

        write_parquet(tmp_path / "in" / "a.parquet", corpus_lines[:600], row_group_size=100)
        text.unlink()
    return tmp_path / "in"


@pytest.mark.parametrize("kind", ["plain", "gzip", "parquet"])
def test_a_resumed_bar_counts_the_work_done_before(monkeypatch, tmp_path, corpus_lines, tokenizer_dir, bars, kind):
    root = _files(tmp_path, corpus_lines, kind)
    monkeypatch.setattr(encoding, "BATCH_BYTES", 16 << 10)
    args = preprocess_args(root, tokenizer_dir, tmp_path / "ds", "--checkpoint-seconds", 0, "-q")
    cursor = _kill_then_resume(monkeypatch, args, 6)
    first, resumed = bars
    assert first.created_with == 0 and first.done <= first.total
    assert resumed.created_with == 0  # the cursor is in the first file: nothing finished before it
    assert cursor["unit"] == 0
    a = next(p for p in root.iterdir() if p.name.startswith("a."))
    size = a.stat().st_size
    if kind == "plain":
        assert resumed.initial == cursor["offset"]  # exactly the bytes before the resume point
    elif kind == "parquet":
        assert resumed.initial == size * cursor["offset"] // 600  # the cursor's row, as a position
    else:  # compressed: how far the resumed run had to read into the .gz to get back there
        assert 0 < resumed.initial < size
    assert 0 < resumed.initial < resumed.total
    assert resumed.done == resumed.total  # it ends full, not past it


def test_finished_units_count_as_done(monkeypatch, tmp_path, corpus_lines, tokenizer_dir, bars):
    root = _files(tmp_path, corpus_lines, "plain")
    monkeypatch.setattr(encoding, "BATCH_BYTES", 16 << 10)
    args = preprocess_args(root, tokenizer_dir, tmp_path / "ds", "--checkpoint-seconds", 0, "-q")
    first_file = (root / "a.txt").stat().st_size
    cursor = _kill_then_resume(monkeypatch, args, 14)  # well into the second file
    assert cursor["unit"] == 1
    _, resumed = bars
    assert resumed.created_with == first_file
    assert resumed.initial == first_file + cursor["offset"]
    assert resumed.done == resumed.total == first_file + (root / "b.txt").stat().st_size


def test_a_part_fills_its_own_bar(tmp_path, corpus_lines, tokenizer_dir, bars):
    """--part 1/2 starts mid-file: the bytes before its range are no part of its bar."""
    path = write_lines(tmp_path / "a.txt", corpus_lines[:600])
    r = preprocess_cli(*preprocess_args(path, tokenizer_dir, tmp_path / "ds", "--part", "1/2", "-q"))
    assert r.exit_code == 0, r.output
    (bar,) = bars
    assert bar.initial == 0 and bar.done == bar.total == path.stat().st_size - path.stat().st_size // 2
