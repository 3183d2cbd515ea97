"""shards.staging.NewOutput: an output directory is either complete or absent, it has one writer,
and it never takes (or deletes) a dataset another writer finished."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from shards import Dataset, verify
from shards import staging
from shards.lock import DirectoryBusyError
from shards.staging import MARKER, NewOutput
from tests.helpers import assert_clean_error, shards_cli, tree_bytes


def test_a_dataset_finished_while_a_second_merge_reached_for_the_lock_is_kept(make_dataset, tmp_path, monkeypatch):
    """Writer B finds --out absent; writer A finishes into it just before B takes the lock. B must
    see A's complete dataset under the lock and refuse it, not merge into it and then clear it."""
    a = make_dataset([[5, 6, 2], [7, 2]], name="a")
    b = make_dataset([[8, 9, 10, 2]], name="b")
    finished = tmp_path / "finished"
    assert shards_cli("merge", a, b, "--out", finished).exit_code == 0
    out = tmp_path / "out"
    take = staging.DirectoryLock.acquire

    def a_finishes_first(lock):
        if lock.directory == out and not (out / "manifest.json").exists():
            shutil.copytree(finished, out, dirs_exist_ok=True)  # A's run ends: marker gone, manifest written
        return take(lock)

    monkeypatch.setattr(staging.DirectoryLock, "acquire", a_finishes_first)
    line = assert_clean_error(shards_cli("merge", a, b, "--out", out), 2)
    assert line == f"error: --out {out}: not empty; choose a new directory"
    assert tree_bytes(out) == tree_bytes(finished)  # A's dataset, whole, and no lock or marker left behind
    assert verify(out) == [] and Dataset(out).num_tokens == 9


def _marker_write_fails(monkeypatch) -> None:
    """Writing the marker meets a full disk: the file is created, its bytes are not written."""
    write = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == MARKER:
            self.open("w").close()
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_a_failure_while_marking_releases_the_lock_and_the_directory_it_made(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _marker_write_fails(m)
        with pytest.raises(OSError, match="No space left"):
            with NewOutput(out, "shards merge"):
                pytest.fail("the block must not run")
    assert not out.exists()
    with NewOutput(out, "shards merge") as d:  # the same process tries again: not DirectoryBusyError
        (d / "data").write_text("x")
    assert sorted(p.name for p in out.iterdir()) == ["data"]


def test_a_failure_clearing_a_killed_run_releases_the_lock_and_keeps_its_marker(tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / "tokenizer").mkdir(parents=True)
    (out / MARKER).write_text("shards merge\n")
    with monkeypatch.context() as m:
        m.setattr(staging.shutil, "rmtree", lambda p: (_ for _ in ()).throw(PermissionError(errno.EACCES, "no", p)))
        with pytest.raises(PermissionError):
            with NewOutput(out, "shards merge"):
                pytest.fail("the block must not run")
    assert (out / MARKER).exists()  # still marked: the next run clears what is left
    try:
        with NewOutput(out, "shards merge") as d:
            (d / "data").write_text("x")
    except DirectoryBusyError as e:
        pytest.fail(f"the failed attempt kept the lock: {e}")
    assert sorted(p.name for p in out.iterdir()) == ["data"]
