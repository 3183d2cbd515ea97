"""Parquet and Arrow inputs through `preprocess`: the same tokens and fingerprint as the text they
hold, for any --workers, after a kill, in --part K/N pieces joined by `shards merge`, with the same
--valid-fraction split, and bad values counted like bad JSON lines."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from unittest import mock

import pytest

from preprocess import encoding
from shards import Dataset
from tests.columnar_files import write_arrow, write_parquet, write_save_to_disk
from tests.conftest import preprocess_args
from tests.helpers import (assert_clean_error, die_at_write, documents, preprocess_cli, run_killed, shards_cli,
                           tree_bytes, write_lines)

pytest.importorskip("pyarrow")


def _ok(*args):
    r = preprocess_cli(*args)
    assert r.exit_code == 0, r.output
    return r


def _fingerprint(out: Path) -> str:
    return Dataset(out).fingerprint


def _inputs(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())["inputs"]


@pytest.fixture(scope="module")
def lines(corpus_lines) -> list[str]:
    return corpus_lines[:400]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, lines, tokenizer_dir) -> Path:
    """The reference: the same documents as a .txt file, one per line."""
    root = tmp_path_factory.mktemp("txt")
    _ok(*preprocess_args(write_lines(root / "docs.txt", lines), tokenizer_dir, root / "ds", "-q"))
    return root / "ds"


@pytest.mark.parametrize("make", [
    lambda p, v: write_parquet(p / "docs.parquet", v, row_group_size=37),
    lambda p, v: write_parquet(p / "docs.parquet", v, row_group_size=10_000),  # one row group
    lambda p, v: write_parquet(p / "docs.parquet", [s.encode() for s in v], binary=True),
    lambda p, v: write_arrow(p / "docs.arrow", v),  # an IPC stream, as datasets writes
    lambda p, v: write_arrow(p / "docs.arrow", v, stream=False),  # the IPC file format
    lambda p, v: write_save_to_disk(p / "saved", v),
], ids=["parquet", "parquet-one-group", "parquet-binary", "arrow-stream", "arrow-file", "save_to_disk"])
def test_same_fingerprint_as_the_text(tmp_path, lines, tokenizer_dir, text_run, make):
    path = make(tmp_path, lines)
    _ok(*preprocess_args(path, tokenizer_dir, tmp_path / "ds", "-q"))
    assert documents(tmp_path / "ds") == documents(text_run)
    assert _fingerprint(tmp_path / "ds") == _fingerprint(text_run)


def test_workers_give_identical_bytes(monkeypatch, tmp_path, lines, tokenizer_dir, text_run):
    path = write_parquet(tmp_path / "docs.parquet", lines, row_group_size=1000)
    monkeypatch.setattr(encoding, "BATCH_BYTES", 8 << 10)  # ~20 tasks inside one row group
    trees = {}
    for workers in (0, 1, 2):
        out = tmp_path / f"w{workers}"
        args = preprocess_args(path, tokenizer_dir, out, "--shard-tokens", 3000, "-q")
        args[args.index("--workers") + 1] = str(workers)
        _ok(*args)
        trees[workers] = tree_bytes(out)
    assert trees[0] == trees[1] == trees[2]
    assert sum(name.startswith("shard_") for name in trees[0]) > 10


@pytest.mark.parametrize("k", [1, 7])
def test_resume_after_a_kill_gives_the_same_bytes(monkeypatch, tmp_path, lines, tokenizer_dir, k):
    path = write_parquet(tmp_path / "docs.parquet", lines, row_group_size=150)
    monkeypatch.setattr(encoding, "BATCH_BYTES", 8 << 10)
    ref = tmp_path / "ref"
    _ok(*preprocess_args(path, tokenizer_dir, ref, "--shard-tokens", 3000, "-q"))
    out = tmp_path / "ds"
    args = preprocess_args(path, tokenizer_dir, out, "--shard-tokens", 3000, "--checkpoint-seconds", 0)
    run_killed(monkeypatch, args, lambda m: die_at_write(m, k))
    cursor = json.loads((out / ".preprocess" / "state.json").read_text())["cursor"]
    assert cursor["offset"] % 150 != 0  # the run stopped inside a row group: resuming enters it mid-way
    r = _ok(*args)
    assert "resumed" in r.stdout  # the summary says so
    assert tree_bytes(out) == tree_bytes(ref)


def test_parts_join_to_the_whole(tmp_path, corpus_lines, tokenizer_dir):
    """--part K/3 over a directory of two Parquet files (one of them a single row group that two
    parts share), joined by `shards merge`: the tokens and fingerprint of one run."""
    root = tmp_path / "fineweb"
    write_parquet(root / "000_00000.parquet", corpus_lines[:250], row_group_size=1000)
    write_parquet(root / "000_00001.parquet", corpus_lines[250:400], row_group_size=40)
    whole = tmp_path / "whole"
    _ok(*preprocess_args(root, tokenizer_dir, whole, "-q"))
    parts, joined = [], []
    for k in range(3):
        out = tmp_path / f"part{k}"
        _ok(*preprocess_args(root, tokenizer_dir, out, "--part", f"{k}/3", "-q"))
        parts.append(out)
        joined += documents(out)
        assert documents(out)  # every part got some of the documents
    assert joined == documents(whole) and len(joined) == 400
    assert {i["name"] for i in _inputs(parts[0])} & {i["name"] for i in _inputs(parts[1])}  # a file shared
    r = shards_cli("merge", *parts, "--out", tmp_path / "merged")
    assert r.exit_code == 0, r.output
    assert _fingerprint(tmp_path / "merged") == _fingerprint(whole)


def test_valid_fraction_splits_like_the_text(tmp_path, lines, tokenizer_dir):
    txt = write_lines(tmp_path / "docs.txt", lines)
    pq = write_parquet(tmp_path / "docs.parquet", lines)
    for path, out in ((txt, tmp_path / "a"), (pq, tmp_path / "b")):
        _ok(*preprocess_args(path, tokenizer_dir, out, "--valid-fraction", 0.25, "-q"))
    for split in ("train", "valid"):
        assert _fingerprint(tmp_path / "a" / split) == _fingerprint(tmp_path / "b" / split)
    assert 40 < len(documents(tmp_path / "b" / "valid")) < 160


def test_bad_values_are_skipped_and_counted(tmp_path, tokenizer_dir, corpus_lines):
    long = "".join(corpus_lines[:60])  # ~22 kB in one value: split at --max-doc-bytes
    values = [corpus_lines[0], None, "", "  \t", "a\x00b", long, None, corpus_lines[1]]
    path = write_parquet(tmp_path / "docs.parquet", values, row_group_size=3)
    out = tmp_path / "ds"
    r = _ok(*preprocess_args(path, tokenizer_dir, out, "--max-doc-bytes", 4096))
    (counts,) = _inputs(out)
    assert (counts["documents"], counts["no_text"], counts["empty"], counts["whitespace"]) == (4, 2, 1, 1)
    assert (counts["nul_bytes"], counts["split"]) == (1, 1)
    assert "no_text 2" in r.stdout
    assert Dataset(out).manifest.raw["stats"]["no_text"] == 2

    line = assert_clean_error(preprocess_cli(*preprocess_args(path, tokenizer_dir, tmp_path / "s", "--errors",
                                                               "strict", "-q")), 1)
    assert f"{path}: row 1: 'text' is null" in line
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_invalid_utf8_in_a_binary_column(tmp_path, tokenizer_dir):
    path = write_parquet(tmp_path / "docs.parquet", [b"ok", b"bad \xff here", b"fine"], binary=True)
    out = tmp_path / "ds"
    _ok(*preprocess_args(path, tokenizer_dir, out, "-q"))
    assert _inputs(out)[0]["replaced"] == 1
    line = assert_clean_error(preprocess_cli(*preprocess_args(path, tokenizer_dir, tmp_path / "s", "--errors",
                                                               "strict", "-q")), 1)
    assert f"{path}: row 1: invalid UTF-8 (byte 4 of its 'text' value)" in line


def test_text_key_chooses_the_column(tmp_path, lines, tokenizer_dir, text_run):
    path = write_parquet(tmp_path / "docs.parquet", lines, key="content")
    line = assert_clean_error(preprocess_cli(*preprocess_args(path, tokenizer_dir, tmp_path / "a", "-q")), 2)
    assert f"{path}: no column 'text' (columns: id, content, score); choose one with --text-key" in line
    line = assert_clean_error(preprocess_cli(*preprocess_args(path, tokenizer_dir, tmp_path / "b", "--text-key",
                                                               "score", "-q")), 2)
    assert "column 'score' holds double, not text" in line and "(text columns: content)" in line
    _ok(*preprocess_args(path, tokenizer_dir, tmp_path / "c", "--text-key", "content", "-q"))
    assert _fingerprint(tmp_path / "c") == _fingerprint(text_run)


def test_a_later_file_without_the_column_is_refused_before_encoding(monkeypatch, tmp_path, lines, tokenizer_dir):
    write_parquet(tmp_path / "in" / "a.parquet", lines[:50])
    write_parquet(tmp_path / "in" / "b.parquet", lines[50:100], key="body")
    out = tmp_path / "ds"
    encoded = []
    monkeypatch.setattr(encoding.worker, "process", lambda task: encoded.append(task))  # --workers 0: here
    line = assert_clean_error(preprocess_cli(*preprocess_args(tmp_path / "in", tokenizer_dir, out, "-q")), 2)
    assert "b.parquet: no column 'text'" in line
    assert encoded == []  # refused before the first task, not when the run reached b.parquet


def test_a_wrong_text_key_leaves_nothing_the_corrected_command_trips_on(tmp_path, lines, tokenizer_dir, text_run):
    """The column check comes before the journal: the same --out then takes the right --text-key
    (it used to be refused as "an interrupted run of a different command")."""
    write_parquet(tmp_path / "in" / "a.parquet", lines[:60], key="content")
    out = tmp_path / "ds"
    line = assert_clean_error(preprocess_cli(*preprocess_args(tmp_path / "in", tokenizer_dir, out, "-q")), 2)
    assert "no column 'text'" in line
    _ok(*preprocess_args(tmp_path / "in", tokenizer_dir, out, "--text-key", "content", "-q"))
    assert Dataset(out).num_documents == 60


def test_corrupt_files(tmp_path, lines, tokenizer_dir):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not a parquet file at all")
    line = assert_clean_error(preprocess_cli(*preprocess_args(bad, tokenizer_dir, tmp_path / "a", "-q")), 1)
    assert f"{bad}: not readable as a Parquet file" in line
    good = write_parquet(tmp_path / "cut.parquet", lines)
    good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    line = assert_clean_error(preprocess_cli(*preprocess_args(good, tokenizer_dir, tmp_path / "b", "-q")), 1)
    assert f"{good}: not readable as a Parquet file" in line
    arrow = write_arrow(tmp_path / "cut.arrow", lines)
    arrow.write_bytes(arrow.read_bytes()[:3000])
    line = assert_clean_error(preprocess_cli(*preprocess_args(arrow, tokenizer_dir, tmp_path / "c", "-q")), 1)
    assert f"{arrow}: not readable as an Arrow IPC file or stream" in line


def test_save_to_disk_files_are_read_in_state_json_order(tmp_path, lines, tokenizer_dir, text_run):
    saved = write_save_to_disk(tmp_path / "saved", lines, shards=4, order=[2, 0, 3, 1])
    (saved / "cache-1234.arrow").write_bytes(b"not listed in state.json: not read")
    out = tmp_path / "ds"
    r = _ok(*preprocess_args(saved, tokenizer_dir, out))
    assert documents(out) == documents(text_run)
    assert [Path(i["name"]).name for i in _inputs(out)] == [f"data-0000{k}-of-00004.arrow" for k in (2, 0, 3, 1)]
    assert "ignored 1 file(s)" in r.stderr  # the unlisted .arrow; state.json and dataset_info.json are read

    (saved / "data-00003-of-00004.arrow").unlink()
    line = assert_clean_error(preprocess_cli(*preprocess_args(saved, tokenizer_dir, tmp_path / "b", "-q")), 1)
    assert "state.json: lists data-00003-of-00004.arrow, which is missing" in line


def test_a_dataset_dict_asks_for_one_split(tmp_path, lines, tokenizer_dir):
    root = tmp_path / "dd"
    write_save_to_disk(root / "train", lines[:300])
    write_save_to_disk(root / "test", lines[300:])
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    line = assert_clean_error(preprocess_cli(*preprocess_args(root, tokenizer_dir, tmp_path / "a", "-q")), 2)
    assert f"{root}: a Hugging Face DatasetDict (splits: train, test); pass the split you want, e.g. {root}/train" \
        in line
    _ok(*preprocess_args(root / "train", tokenizer_dir, tmp_path / "b", "-q"))
    assert len(documents(tmp_path / "b")) == 300


def test_hub_snapshot_directory(tmp_path, lines, tokenizer_dir, text_run):
    """A dataset repository as huggingface_hub leaves it in its cache: files are links into
    blobs/, next to README.md and .gitattributes. A directory input reads its Parquet files."""
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "abc123"
    for k, chunk in enumerate((lines[:150], lines[150:])):
        blob = write_parquet(blobs / f"{k}f3e9", chunk)  # blobs are named by hash, without a suffix
        link = snap / "data" / f"train-0000{k}-of-00002.parquet"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (snap / "README.md").write_text("---\nlicense: odc-by\n---\n")
    (snap / ".gitattributes").write_text("*.parquet filter=lfs\n")
    out = tmp_path / "ds"
    r = _ok(*preprocess_args(snap, tokenizer_dir, out))
    assert "ignored 2 file(s)" in r.stderr
    assert _fingerprint(out) == _fingerprint(text_run)


def test_vocab_size_trains_on_parquet(tmp_path, corpus_lines):
    """Tokenizer-sample windows (--sample-bytes below the file's size) select rows inside row groups."""
    path = write_parquet(tmp_path / "docs.parquet", corpus_lines[:1500], row_group_size=500)
    out = tmp_path / "ds"
    _ok(path, "--vocab-size", 800, "--character-coverage", 0.98, "--sample-bytes", 200_000, "--workers", 0,
        "--out", out, "-q")
    assert Dataset(out).num_documents == 1500


def test_without_pyarrow_one_line_names_the_extra(monkeypatch, tmp_path, lines, tokenizer_dir):
    path = write_parquet(tmp_path / "docs.parquet", lines[:5])
    arrow = write_arrow(tmp_path / "docs.arrow", lines[:5])
    for p, what in ((path, "Parquet"), (arrow, "Arrow")):
        with mock.patch.dict(sys.modules, {"pyarrow": None, "pyarrow.parquet": None}):
            line = assert_clean_error(preprocess_cli(*preprocess_args(p, tokenizer_dir, tmp_path / "ds", "-q")), 2)
        assert line == f"error: {p}: reading {what} needs pyarrow: pip install 'shardtrain[parquet]'"
    assert not (tmp_path / "ds").exists()
