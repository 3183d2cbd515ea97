"""`shards.verify`: every byte re-hashed, every id and document index checked, nothing recomputed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from shards import ShardFormatError, load_manifest, verify
from shards.layout import NPY_HEADER_BYTES
from tests.conftest import random_docs


@pytest.fixture
def dataset(make_dataset) -> Path:
    return make_dataset(random_docs(np.random.default_rng(7), 60, 1000), shard_tokens=200)


def _entry(path: Path, i: int):
    return load_manifest(path).shards[i]


def _problems(path: Path) -> list[str]:
    return [str(p) for p in verify(path)]


def test_intact_dataset_has_no_problems(dataset):
    seen = []
    assert verify(dataset, progress=seen.append) == []
    assert sum(seen) == load_manifest(dataset).num_tokens


def test_flipped_byte_is_found(dataset):
    victim = dataset / _entry(dataset, 1).file
    data = bytearray(victim.read_bytes())
    data[NPY_HEADER_BYTES + 4] ^= 0x01  # the low byte: still a valid id, only the hash can tell
    victim.write_bytes(bytes(data))
    assert _problems(dataset) == [f"{victim}: sha256 mismatch (corrupted bytes)"]


def test_truncated_shard_is_found(dataset):
    victim = dataset / _entry(dataset, 2).file
    os.truncate(victim, victim.stat().st_size - 1)
    problems = _problems(dataset)
    assert len(problems) == 1 and problems[0].startswith(f"{victim}: size")
    assert "truncated" in problems[0]


def test_missing_shard_is_found(dataset):
    victim = dataset / _entry(dataset, 0).file
    victim.unlink()
    assert _problems(dataset) == [f"{victim}: missing"]


def test_id_outside_vocabulary_written_behind_the_writers_back(dataset):
    entry = _entry(dataset, 1)
    victim = dataset / entry.file
    with open(victim, "r+b") as f:  # no hash, no manifest edit: just the bytes
        f.seek(NPY_HEADER_BYTES + 2 * 7)
        f.write(np.array([60_000], dtype="<u2").tobytes())
    problems = _problems(dataset)
    assert f"{victim}: token id 60000 at position 7 >= vocab_size 1000" in problems
    assert f"{victim}: sha256 mismatch (corrupted bytes)" in problems
    assert all(p.startswith(str(victim)) for p in problems)


def test_corrupted_document_index_is_found(dataset):
    victim = dataset / _entry(dataset, 0).index_file
    data = bytearray(victim.read_bytes())
    data[NPY_HEADER_BYTES + 8] ^= 0x40
    victim.write_bytes(bytes(data))
    assert _problems(dataset) == [f"{victim}: sha256 mismatch (corrupted document index)"]


def test_inconsistent_document_index_is_found(dataset):
    """An index whose hash matches the manifest but whose starts make no sense (a buggy writer)."""
    entry = _entry(dataset, 0)
    victim = dataset / entry.index_file
    starts = np.load(victim)
    starts[1], starts[2] = starts[2], starts[1]
    np.save(victim, starts)
    m = json.loads((dataset / "manifest.json").read_text())
    from shards.hashing import sha256_file

    m["shards"][0].update(index_sha256=sha256_file(victim), index_bytes=victim.stat().st_size)
    (dataset / "manifest.json").write_text(json.dumps(m))
    assert _problems(dataset) == [f"{victim}: document starts are not 0, strictly increasing and inside the shard "
                                 "(first bad: document 2 of the shard)"]


def test_changed_tokenizer_is_found(dataset):
    (dataset / "tokenizer" / "tokenizer_config.json").write_text("{}")
    assert _problems(dataset) == [f"{dataset / 'tokenizer'}: tokenizer files differ from the manifest's sha256"]
    shutil.rmtree(dataset / "tokenizer")
    assert _problems(dataset) == [f"{dataset / 'tokenizer'}: tokenizer directory missing or empty"]


def test_stream_hash_and_fingerprint_are_checked(dataset):
    m = json.loads((dataset / "manifest.json").read_text())
    m["fingerprint"] = "0" * 64
    (dataset / "manifest.json").write_text(json.dumps(m))
    assert _problems(dataset) == [f"{dataset}: fingerprint does not match the stream and tokenizer"]
    m["stream_sha256"] = "0" * 64
    (dataset / "manifest.json").write_text(json.dumps(m))
    assert _problems(dataset) == [f"{dataset}: token stream hash differs from the manifest"]


def test_every_bad_shard_is_named(dataset):
    a, b = dataset / _entry(dataset, 0).file, dataset / _entry(dataset, 3).file
    os.truncate(a, a.stat().st_size - 2)
    data = bytearray(b.read_bytes())
    data[-1] ^= 0x01
    b.write_bytes(bytes(data))
    problems = _problems(dataset)
    assert len(problems) == 2
    assert problems[0].startswith(f"{a}: ") and problems[1].startswith(f"{b}: ")


def test_without_manifest_verify_raises(dataset):
    (dataset / "manifest.json").unlink()
    with pytest.raises(ShardFormatError, match="incomplete dataset"):
        verify(dataset)


def test_a_tokenizer_that_names_code_is_found(dataset):
    """Hashes that match prove only that the files are the ones shipped: verify also checks that
    the tokenizer loads without running code, as inspect, train and the round trip will demand."""
    from shards.hashing import fingerprint, tokenizer_sha256

    config = dataset / "tokenizer" / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    config.write_text(json.dumps(data))
    m = json.loads((dataset / "manifest.json").read_text())
    m["tokenizer"]["sha256"] = tokenizer_sha256(dataset / "tokenizer")  # shipped that way: the hashes agree
    m["fingerprint"] = fingerprint(m["dtype"], m["tokenizer"]["sha256"], m["stream_sha256"])
    (dataset / "manifest.json").write_text(json.dumps(m))
    problems = _problems(dataset)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{dataset / 'tokenizer'}: tokenizer_config.json names custom code (auto_map)")


def test_each_shard_is_read_in_one_pass(dataset):
    """The file's sha256, the stream hash and the id check come from one read of the shard: it is
    opened for its header, then once more (it was read once to hash it, then again mapped)."""
    from tests.open_spy import opened

    with opened() as seen:
        assert verify(dataset) == []
    for entry in load_manifest(dataset).shards:
        assert seen.count(os.path.realpath(dataset / entry.file)) == 2, entry.file


def test_small_read_chunks_give_the_same_findings(dataset, monkeypatch):
    """Ids checked chunk by chunk: positions count across chunks, and the stream hash is whole."""
    from shards import hashing

    monkeypatch.setattr(hashing, "_CHUNK", 6)  # 3 uint16 ids a read
    seen = []
    assert verify(dataset, progress=seen.append) == []
    assert sum(seen) == load_manifest(dataset).num_tokens and max(seen) == 3
    victim = dataset / _entry(dataset, 2).file
    with open(victim, "r+b") as f:
        f.seek(NPY_HEADER_BYTES + 2 * 13)
        f.write(np.array([1000], dtype="<u2").tobytes())
    assert _problems(dataset) == [f"{victim}: sha256 mismatch (corrupted bytes)",
                                  f"{victim}: token id 1000 at position 13 >= vocab_size 1000"]
