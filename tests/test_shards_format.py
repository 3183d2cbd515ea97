"""The on-disk contract: writer/reader round trips, fingerprint, dtype rule, refusals of bad data."""

from __future__ import annotations

import builtins
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shards import (Dataset, DatasetWriter, IncompleteDatasetError, ShardFormatError, dtype_for_vocab,
                    load_manifest)
from shards.layout import NPY_HEADER_BYTES
from tests.conftest import random_docs, write_dataset


def _docs(seed: int, n: int, vocab: int, max_len: int = 40) -> list[np.ndarray]:
    return random_docs(np.random.default_rng(seed), n, vocab, max_len)


@pytest.mark.parametrize("vocab_size, dtype", [(1000, np.uint16), (65_536, np.uint16), (70_000, np.uint32)])
def test_round_trip_and_dtype(make_dataset, vocab_size, dtype):
    docs = _docs(0, 60, vocab_size)
    docs[3][0] = vocab_size - 1  # the largest id must survive the narrowing to the dtype
    path = make_dataset(docs, vocab_size=vocab_size, shard_tokens=37)
    ds = Dataset(path)
    assert ds.dtype == np.dtype(dtype)
    assert ds.manifest.raw["dtype"] == np.dtype(dtype).name
    assert ds.num_tokens == sum(len(d) for d in docs)
    assert ds.num_documents == len(docs)
    assert len(ds.manifest.shards) > 3
    assert np.array_equal(ds.read(0, ds.num_tokens), np.concatenate(docs))
    for d in range(len(docs)):
        assert np.array_equal(ds.document(d), docs[d])
    # A document never straddles two shards: shards end at the first document boundary past the target.
    assert all(s.num_tokens >= 37 for s in ds.manifest.shards[:-1])


def test_dtype_rule():
    assert dtype_for_vocab(1) == np.uint16
    assert dtype_for_vocab(1 << 16) == np.uint16
    assert dtype_for_vocab((1 << 16) + 1) == np.uint32
    assert dtype_for_vocab(1 << 32) == np.uint32
    with pytest.raises(ValueError):
        dtype_for_vocab((1 << 32) + 1)
    with pytest.raises(ValueError):
        dtype_for_vocab(0)


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 30), min_size=1, max_size=40), shard_tokens=st.integers(1, 80),
       data=st.data())
def test_read_across_shard_boundaries(tokenizer_dir, lengths, shard_tokens, data):
    rng = np.random.default_rng(len(lengths) * 1000 + shard_tokens)
    docs = [rng.integers(0, 1000, size=n) for n in lengths]
    flat = np.concatenate(docs)
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp) / "ds", docs, vocab_size=1000, shard_tokens=shard_tokens,
                      tokenizer_dir=tokenizer_dir)
        ds = Dataset(Path(tmp) / "ds")
        for _ in range(5):
            a = data.draw(st.integers(0, len(flat)))
            b = data.draw(st.integers(a, len(flat)))
            assert np.array_equal(ds.read(a, b), flat[a:b])
        d = data.draw(st.integers(0, len(docs) - 1))
        assert np.array_equal(ds.document(d), docs[d])
        starts = np.concatenate(([0], np.cumsum(lengths)))
        assert ds.document_span(d) == (starts[d], starts[d + 1])
        with pytest.raises(IndexError):
            ds.read(0, len(flat) + 1)
        with pytest.raises(IndexError):
            ds.document(len(docs))
        ds.close()


def test_fingerprint_names_the_stream_and_tokenizer(make_dataset, tokenizer_dir, tmp_path):
    docs = _docs(1, 80, 1000)
    fine = Dataset(make_dataset(docs, shard_tokens=10))
    coarse = Dataset(make_dataset(docs, shard_tokens=100_000))
    assert len(fine.manifest.shards) > 10 and len(coarse.manifest.shards) == 1
    assert fine.fingerprint == coarse.fingerprint

    changed = [d.copy() for d in docs]
    changed[40][0] = (changed[40][0] + 1) % 1000
    assert Dataset(make_dataset(changed, shard_tokens=10)).fingerprint != fine.fingerprint

    other_tok = tmp_path / "other-tokenizer"
    shutil.copytree(tokenizer_dir, other_tok)
    config = other_tok / "tokenizer_config.json"
    config.write_text(config.read_text().replace("</s>", "</eos>"))
    write_dataset(tmp_path / "other", docs, vocab_size=1000, shard_tokens=10, tokenizer_dir=other_tok)
    assert Dataset(tmp_path / "other").fingerprint != fine.fingerprint


def test_shards_open_with_np_load_mmap(make_dataset):
    docs = _docs(2, 30, 70_000)
    path = make_dataset(docs, vocab_size=70_000, shard_tokens=40)
    ds = Dataset(path)
    pieces = []
    for entry in ds.manifest.shards:
        arr = np.load(path / entry.file, mmap_mode="r")
        assert isinstance(arr, np.memmap)
        assert arr.ndim == 1 and arr.dtype == np.uint32 and len(arr) == entry.num_tokens
        pieces.append(np.asarray(arr))
        index = np.load(path / entry.index_file, mmap_mode="r")
        assert index.dtype == np.int64 and index.shape == (entry.num_documents,) and index[0] == 0
    assert np.array_equal(np.concatenate(pieces), np.concatenate(docs))


@pytest.mark.parametrize("bad", [1000, 65_535, 65_536, 1 << 40, -1])
def test_writer_refuses_ids_outside_the_vocabulary(tmp_path, bad):
    w = DatasetWriter(tmp_path / "ds", vocab_size=1000, shard_tokens=4)
    w.add(np.array([1, 2, 3]), [3])
    with pytest.raises(ShardFormatError, match=f"token id {bad} is outside the vocabulary"):
        w.add(np.array([5, bad, 7], dtype=np.int64), [3])
    # Nothing of the refused call reached the disk, truncated or otherwise.
    assert w.num_tokens == 3
    w.checkpoint()  # flushes what was written
    assert (tmp_path / "ds" / "shard_00000.npy.tmp").stat().st_size == NPY_HEADER_BYTES + 3 * 2


def test_writer_rejects_malformed_calls(tmp_path):
    w = DatasetWriter(tmp_path / "ds", vocab_size=1000, shard_tokens=4)
    with pytest.raises(ValueError):
        w.add(np.array([1, 2, 3]), [2])
    with pytest.raises(ValueError):
        w.add(np.array([1, 2]), [2, 0])
    with pytest.raises(ValueError):
        w.add(np.array([1.0, 2.0]), [2])
    with pytest.raises(ValueError):
        DatasetWriter(tmp_path / "x", vocab_size=10, shard_tokens=0)


def test_crashed_writer_leaves_an_incomplete_dataset(tmp_path, tokenizer_dir):
    path = tmp_path / "ds"
    shutil.copytree(tokenizer_dir, path / "tokenizer")
    w = DatasetWriter(path, vocab_size=1000, shard_tokens=5)
    w.add(np.arange(30), [3] * 10)  # commits shards, but no finish(): no manifest
    assert (path / "shard_00000.npy").exists()
    with pytest.raises(IncompleteDatasetError, match="incomplete dataset: no manifest.json"):
        Dataset(path)


def test_a_manifest_that_fails_validation_is_never_written(tmp_path, tokenizer_dir):
    """finish() checks the manifest it built before writing it: an invalid one (here: settings
    that are not an object) would otherwise sit on disk, marking the dataset complete."""
    path = tmp_path / "ds"
    shutil.copytree(tokenizer_dir, path / "tokenizer")
    w = DatasetWriter(path, vocab_size=1000, shard_tokens=5)
    w.add(np.arange(6), [3, 3])
    with pytest.raises(ShardFormatError, match="settings must be a JSON object"):
        w.finish(eos_id=None, eos_separates_documents=False, tokenizer={"kind": "test", "source": "t"},
                 settings=["not", "an", "object"], inputs=[], stats={}, source_bytes=0, tool_version="test")
    assert not (path / "manifest.json").exists()


@pytest.fixture
def dataset(make_dataset) -> Path:
    return make_dataset(_docs(3, 40, 1000), shard_tokens=50)


def test_directory_without_manifest_is_incomplete(dataset):
    (dataset / "manifest.json").unlink()
    with pytest.raises(IncompleteDatasetError) as e:
        Dataset(dataset)
    assert "incomplete dataset" in str(e.value) and "re-run" in str(e.value)


def test_missing_directory(tmp_path):
    with pytest.raises(ShardFormatError, match="no such dataset directory"):
        Dataset(tmp_path / "nope")


def test_manifest_not_json(dataset):
    (dataset / "manifest.json").write_text('{"format": "shardtrain-tokens", ')
    with pytest.raises(ShardFormatError, match=r"manifest\.json: not valid JSON"):
        Dataset(dataset)


def _edit_manifest(path: Path, **changes) -> None:
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))


def test_newer_format_version_is_refused(dataset):
    _edit_manifest(dataset, format_version=99)
    with pytest.raises(ShardFormatError, match=r"manifest\.json: format_version 99 is newer.*upgrade"):
        Dataset(dataset)


@pytest.mark.parametrize("changes, message", [
    ({"format": "something-else"}, "not a shardtrain-tokens manifest"),
    ({"format_version": "1"}, "bad format_version"),
    ({"dtype": "int8"}, "unsupported token dtype"),
    ({"num_tokens": 1}, "do not add up"),
    ({"shards": [{"file": "x"}]}, r"shards\[0\] lacks num_tokens"),
])
def test_inconsistent_manifest_is_refused(dataset, changes, message):
    _edit_manifest(dataset, **changes)
    with pytest.raises(ShardFormatError, match=message):
        Dataset(dataset)


def _shard(path: Path, i: int) -> Path:
    return path / load_manifest(path).shards[i].file


def test_missing_shard(dataset):
    victim = _shard(dataset, 1)
    victim.unlink()
    with pytest.raises(ShardFormatError, match=f"{victim.name}: shard listed in the manifest is missing"):
        Dataset(dataset)


def test_truncated_shard(dataset):
    victim = _shard(dataset, 1)
    os.truncate(victim, victim.stat().st_size - 2)
    with pytest.raises(ShardFormatError, match=f"{victim.name}: .*truncated or resized"):
        Dataset(dataset)


def test_resized_shard(dataset):
    victim = _shard(dataset, 0)
    with open(victim, "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(ShardFormatError, match=f"{victim.name}: .*truncated or resized"):
        Dataset(dataset)


def test_header_disagreeing_with_manifest(dataset):
    victim = _shard(dataset, 0)
    data = bytearray(victim.read_bytes())
    head = data[:NPY_HEADER_BYTES].decode("latin1")
    n = load_manifest(dataset).shards[0].num_tokens
    new = head.replace(f"({n},)", f"({n - 1},)")
    assert len(new) == len(head)  # same digit count: the file keeps its size
    data[:NPY_HEADER_BYTES] = new.encode("latin1")
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardFormatError, match=f"{victim.name}: header says {n - 1} x uint16"):
        Dataset(dataset)


def test_garbage_shard_header(dataset):
    victim = _shard(dataset, 0)
    data = bytearray(victim.read_bytes())
    data[:6] = b"NOTNPY"
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardFormatError, match=f"{victim.name}: not a .npy file"):
        Dataset(dataset)


def test_missing_document_index(dataset):
    victim = dataset / load_manifest(dataset).shards[1].index_file
    victim.unlink()
    with pytest.raises(ShardFormatError, match=f"{victim.name}: .*missing"):
        Dataset(dataset)


def test_garbage_document_index(dataset):
    m = load_manifest(dataset)
    victim = dataset / m.shards[1].index_file
    data = bytearray(victim.read_bytes())
    data[:6] = b"NOTNPY"
    victim.write_bytes(bytes(data))
    ds = Dataset(dataset)
    ds.document(0)  # shard 0 is intact
    with pytest.raises(ShardFormatError, match=victim.name):
        ds.document(m.shards[0].num_documents)


def test_reader_never_writes(dataset, monkeypatch):
    ds0 = Dataset(dataset)
    want = ds0.read(0, ds0.num_tokens)
    before = {p: p.stat().st_mtime_ns for p in dataset.rglob("*")}
    modes = {p: p.stat().st_mode for p in [dataset, *dataset.rglob("*")]}
    for p in modes:
        p.chmod(modes[p] & ~0o222)  # read-only everywhere (root could still write: see below)
    opened: list[tuple[str, object]] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, mode="r", *args, **kwargs):
        opened.append((str(file), mode))
        return real_open(file, mode, *args, **kwargs)

    def spy_os_open(path, flags, *args, **kwargs):
        opened.append((str(path), flags))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    try:
        ds = Dataset(dataset)
        assert np.array_equal(ds.read(0, ds.num_tokens), want)
        for d in range(ds.num_documents):
            ds.document(d)
        for i in range(len(ds.manifest.shards)):
            assert ds.tokens(i)[0] == want[ds.starts[i]]
        ds.close()
    finally:
        monkeypatch.undo()
        for p, mode in modes.items():
            p.chmod(mode)
    assert opened, "the spies saw nothing: the check would be empty"
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    for name, how in opened:
        if isinstance(how, int):
            assert how & write_flags == 0, f"{name} opened with flags {how:#o}"
        else:
            assert not set(str(how)) & set("wax+"), f"{name} opened with mode {how!r}"
    assert {p: p.stat().st_mtime_ns for p in dataset.rglob("*")} == before
