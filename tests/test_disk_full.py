"""A full disk (ENOSPC) in preprocess, shards export, merge and import: one line naming the path
(and the space needed where it is known), nothing that looks complete, and a rerun after space
is freed that ends with the same bytes as an uninterrupted run. Runs on a small tmpfs
(tests/tmpfs.py); skipped, saying why, where one cannot be mounted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shards import Dataset
from shards.space import on_disk
from tests.conftest import preprocess_args, random_docs
from tests.helpers import assert_clean_error, preprocess_cli, shards_cli, tree_bytes
from tests.tmpfs import small_disk  # noqa: F401  (the fixture)

KiB, MiB = 1 << 10, 1 << 20


def _no_check(monkeypatch, module: str) -> None:
    """Skip the up-front space check, as if the space went to another writer after it."""
    monkeypatch.setattr(f"{module}.check_free", lambda *a, **k: None)


def _tree_size(root: Path) -> int:
    return on_disk([p.stat().st_size for p in root.rglob("*") if p.is_file()], root)


# -- shards export ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["llmc", "nanogpt"])
def test_export_is_refused_up_front_with_the_space_it_needs(train_valid, small_disk, fmt):
    disk = small_disk(64 * KiB)
    src = Dataset(train_valid / "train")
    out = disk.path / "bins"
    line = assert_clean_error(shards_cli("export", src.path, "--format", fmt, "--out", out), 1)
    header = 1024 if fmt == "llmc" else 0
    sizes = [header + 2 * e.num_tokens for e in src.manifest.shards] if fmt == "llmc" else [2 * src.num_tokens]
    needed = on_disk(sizes, disk.path)
    assert line.startswith(f"error: --out {out}: ") and f"need {needed:,} bytes" in line and "free" in line, line
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["llmc", "nanogpt"])
def test_export_that_fills_the_disk_leaves_no_bin_and_the_rerun_matches(train_valid, small_disk, tmp_path,
                                                                         monkeypatch, fmt):
    src = train_valid / "train"
    assert shards_cli("export", src, "--format", fmt, "--out", tmp_path / "ref").exit_code == 0
    disk = small_disk(128 * KiB)
    out = disk.path / "bins"
    _no_check(monkeypatch, "shards.interop")
    line = assert_clean_error(shards_cli("export", src, "--format", fmt, "--out", out), 1)
    assert line.startswith(f"error: {out}/") and ".bin: no space left on device" in line, line
    assert "needed in all" in line and "removed the files this export wrote" in line
    assert not out.exists()  # no .bin, no temporary file, not even the directory it made
    disk.resize(16 * MiB)
    again = shards_cli("export", src, "--format", fmt, "--out", out)
    assert again.exit_code == 0, again.output
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


_KILLED_EXPORT = """
import os, signal, sys
from pathlib import Path
from shards.interop import export
from shards.reader import Dataset

ds = Dataset(sys.argv[1])
read, calls = ds.read, []
def dying_read(a, b):  # kill -9 in the middle: after the first files, before the last
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return read(a, b)
ds.read = dying_read
export(ds, "llmc", Path(sys.argv[2]), "data")
"""


def test_export_killed_midway_leaves_no_bin_and_the_rerun_matches(train_valid, tmp_path):
    """Files keep hidden temporary names until all are complete: a kill -9 leaves no data_*.bin."""
    src = train_valid / "train"
    assert len(Dataset(src).manifest.shards) >= 4
    assert shards_cli("export", src, "--format", "llmc", "--out", tmp_path / "ref").exit_code == 0
    out = tmp_path / "bins"
    died = subprocess.run([sys.executable, "-c", _KILLED_EXPORT, str(src), str(out)], capture_output=True)
    assert died.returncode == -9, died.stderr
    assert not list(out.glob("data_*.bin")) and list(out.glob(".data_*.bin.tmp"))  # complete ones, hidden
    again = shards_cli("export", src, "--format", "llmc", "--out", out)
    assert again.exit_code == 0, again.output
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")  # the stale temporary files are gone too


# -- shards merge (parts on another filesystem are copied) ----------------------------------

@pytest.fixture
def parts(make_dataset):
    rng = np.random.default_rng(1)
    return [make_dataset(random_docs(rng, 600, 1000, max_len=80), shard_tokens=5000, name=f"part{k}")
            for k in range(2)]


def test_merge_is_refused_up_front_with_the_space_it_needs(parts, small_disk):
    disk = small_disk(64 * KiB)
    out = disk.path / "merged"
    line = assert_clean_error(shards_cli("merge", *parts, "--out", out), 1)
    assert line.startswith(f"error: --out {out}: the tokenizer and ") and "copied shard(s) need" in line, line
    assert not out.exists()


def test_merge_that_fills_the_disk_writes_no_manifest_and_the_rerun_matches(parts, small_disk, tmp_path,
                                                                           monkeypatch):
    assert shards_cli("merge", *parts, "--out", tmp_path / "ref").exit_code == 0
    need = _tree_size(tmp_path / "ref")
    disk = small_disk(need // 2 // 4096 * 4096)
    out = disk.path / "merged"
    _no_check(monkeypatch, "shards.merge")
    line = assert_clean_error(shards_cli("merge", *parts, "--out", out), 1)
    assert line.startswith(f"error: {out}/") and "no space left on device" in line, line
    assert "removed what this merge wrote" in line
    assert not out.exists()
    disk.resize(16 * MiB)
    again = shards_cli("merge", *parts, "--out", out)
    assert again.exit_code == 0 and "copied" in again.output, again.output
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


# -- shards import ---------------------------------------------------------------------------

def test_import_that_fills_the_disk_leaves_nothing_and_the_rerun_matches(train_valid, small_disk, tmp_path,
                                                                        monkeypatch):
    src = train_valid / "train"
    assert shards_cli("export", src, "--format", "llmc", "--out", tmp_path / "bins").exit_code == 0
    bins = sorted((tmp_path / "bins").glob("*.bin"))
    tok = src / "tokenizer"
    assert shards_cli("import", *bins, "--tokenizer", tok, "--out", tmp_path / "ref").exit_code == 0
    disk = small_disk(_tree_size(tmp_path / "ref") // 2 // 4096 * 4096)
    out = disk.path / "ds"
    up_front = assert_clean_error(shards_cli("import", *bins, "--tokenizer", tok, "--out", out), 1)
    assert up_front.startswith(f"error: --out {out}: ") and "need" in up_front
    _no_check(monkeypatch, "shards.importing")
    line = assert_clean_error(shards_cli("import", *bins, "--tokenizer", tok, "--out", out), 1)
    assert line.startswith(f"error: {out}/") and "no space left on device" in line, line
    assert not out.exists()
    disk.resize(16 * MiB)
    assert shards_cli("import", *bins, "--tokenizer", tok, "--out", out).exit_code == 0
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


# -- preprocess (resumes: its journal and shard .tmp files let the rerun finish) -------------

@pytest.mark.parametrize("where", [
    "saving the tokenizer", "copying the tokenizer", "early shards", "late shards"])
def test_preprocess_that_fills_the_disk_resumes_to_the_same_bytes(sample_dataset, corpus_file, tokenizer_dir,
                                                                   small_disk, where):
    tok = _tree_size(tokenizer_dir)
    size = {"saving the tokenizer": 16 * KiB, "copying the tokenizer": tok + tok // 2,
            "early shards": _tree_size(sample_dataset) * 3 // 10,
            "late shards": _tree_size(sample_dataset) * 9 // 10}[where]
    disk = small_disk(size // 4096 * 4096)
    out = disk.path / "ds"
    line = assert_clean_error(preprocess_cli(*preprocess_args(corpus_file, tokenizer_dir, out, "-q")), 1)
    assert line.startswith(f"error: {out}") and "no space left on device" in line, line
    assert not list(disk.path.rglob("manifest.json"))  # nothing looks complete
    disk.resize(64 * MiB)
    again = preprocess_cli(*preprocess_args(corpus_file, tokenizer_dir, out, "-q"))
    assert again.exit_code == 0, again.output
    assert tree_bytes(out) == tree_bytes(sample_dataset)
