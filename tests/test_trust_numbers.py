"""Sane numbers: a manifest's counts, sizes, ids and hashes are refused in one line when absurd;
and the common slip of passing the parent of train/ and valid/ says what the directory holds."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shards import Dataset, ShardFormatError, load_manifest, verify
from shards.hashing import sha256_file
from shards.layout import NPY_HEADER_BYTES
from tests.helpers import assert_clean_error, shards_cli

EOS = 2
NAN = float("nan")


@pytest.fixture
def dataset(make_dataset) -> Path:
    docs = [[10 + i, 11, 12, 13, 14, EOS] for i in range(8)]
    return make_dataset(docs, shard_tokens=12, eos_id=EOS)


def _edit(ds: Path, path: str, value) -> None:
    """Set manifest key `path` ("a", "a.b", "shards.0.c") to `value`."""
    m = json.loads((ds / "manifest.json").read_text())
    *parents, last = path.split(".")
    node = m
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[int(last) if isinstance(node, list) else last] = value
    (ds / "manifest.json").write_text(json.dumps(m))


def _refused_everywhere(ds: Path, message: str) -> None:
    """Library readers and every command refuse with one line holding `message`."""
    for read in (Dataset, verify, load_manifest):
        with pytest.raises(ShardFormatError) as e:
            read(ds)
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    from train.dataset import BlockDataset

    with pytest.raises(ValueError) as e:
        BlockDataset(ds, 4)
    assert message in str(e.value)
    for command in (["info"], ["verify"], ["inspect", "--doc", "0"], ["export", "--format", "llmc", "--out",
                                                                        ds.parent / "exported"]):
        line = assert_clean_error(shards_cli(command[0], ds, *command[1:]), 1)
        assert message in line


@pytest.mark.parametrize("key, value, message", [
    ("vocab_size", 0, "vocab_size must be an integer in [1, 4,294,967,296], got 0"),
    ("vocab_size", -5, "vocab_size must be an integer in [1, "),
    ("vocab_size", 2**32 + 1, "got 4294967297"),
    ("vocab_size", True, "vocab_size must be an integer in [1, 4,294,967,296], got True"),
    ("vocab_size", 1000.0, "got 1000.0"),
    ("vocab_size", NAN, "got nan"),
    ("vocab_size", "1000", "got '1000'"),
    ("vocab_size", None, "got None"),
    ("vocab_size", 70_000, "dtype uint16 does not match vocab_size 70,000"),
    ("eos_id", -1, "eos_id must be an integer in [0, 999], got -1"),
    ("eos_id", 1000, "eos_id must be an integer in [0, 999], got 1000"),
    ("eos_id", True, "eos_id must be an integer in [0, 999], got True"),
    ("eos_id", 2.0, "eos_id must be an integer in [0, 999], got 2.0"),
    ("eos_id", None, "eos_separates_documents is true but eos_id is null"),
    ("eos_separates_documents", "yes", "eos_separates_documents must be true or false, got 'yes'"),
    ("eos_separates_documents", 1, "eos_separates_documents must be true or false, got 1"),
    ("format_version", True, "bad format_version True"),
    ("num_tokens", -48, "num_tokens must be a non-negative integer, got -48"),
    ("num_tokens", 48.0, "num_tokens must be a non-negative integer, got 48.0"),
    ("num_documents", NAN, "num_documents must be a non-negative integer, got nan"),
    ("shards.0.num_tokens", -12, "shards[0].num_tokens must be a non-negative integer, got -12"),
    ("shards.0.num_tokens", True, "shards[0].num_tokens must be a non-negative integer, got True"),
    ("shards.1.num_documents", 13, "shards[1] has 13 documents in 12 tokens"),
    ("shards.1.num_documents", 0, "shards[1] has 0 documents in 12 tokens"),
    ("shards.2.bytes", 10**15, "shards[2].bytes 1,000,000,000,000,000 does not fit 12 x uint16"),
    ("shards.2.bytes", 20, "shards[2].bytes 20 does not fit 12 x uint16"),
    ("shards.2.index_bytes", 2**62, "shards[2].index_bytes 4,611,686,018,427,387,904 does not fit 2 x int64"),
    ("shards.3.sha256", "abc", "shards[3].sha256 must be a sha256 (64 lowercase hex digits), got 'abc'"),
    ("shards.3.index_sha256", 7, "shards[3].index_sha256 must be a sha256"),
    ("fingerprint", "F" * 64, "fingerprint must be a sha256"),
    ("tokenizer.sha256", None, "tokenizer.sha256 must be a sha256"),
    ("shards.0", [1, 2], "shards[0] must be a JSON object"),
    ("shards", {"file": "x"}, "shards must be a JSON array"),
    ("tokenizer", "tokenizer", "tokenizer must be a JSON object"),
    ("source_bytes", "12", "source_bytes must be a non-negative integer, got '12'"),
    ("settings", [1], "settings must be a JSON object"),
    ("tool", "shardtrain", "tool must be a JSON object"),
    ("inputs", [{"bytes": 3}], "inputs[0] must be an object with a string name"),
    ("settings", {"part": "1/x"}, "settings.part must be \"K/N\" with 0 <= K < N, got '1/x'"),
    ("settings", {"part": "3/2"}, "settings.part must be \"K/N\""),
    ("settings", {"max_doc_bytes": -1}, "settings.max_doc_bytes must be an integer >= 1, got -1"),
])
def test_absurd_values_are_refused_by_every_reader(dataset, key, value, message):
    _edit(dataset, key, value)
    _refused_everywhere(dataset, message)


def test_a_dataset_that_passes_has_sane_values(dataset):
    """The checks accept what the writer writes (and so cannot be vacuous in the other direction)."""
    assert verify(dataset) == []
    m = load_manifest(dataset)
    assert (m.vocab_size, m.eos_id, m.eos_separates_documents, m.num_documents) == (1000, EOS, True, 8)


def test_numbers_past_the_digit_limit_and_absurd_nesting(dataset):
    (dataset / "manifest.json").write_text('{"format": "shardtrain-tokens", "num_tokens": 1' + "0" * 5000 + "}")
    _refused_everywhere(dataset, "manifest.json: not a valid manifest (ValueError")
    (dataset / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    _refused_everywhere(dataset, "manifest.json: not a valid manifest (RecursionError")


def _rewrite_index(ds: Path, shard: int, starts: list[int]) -> Path:
    """Replace a document index by other starts, with the manifest's size and hash to match."""
    m = json.loads((ds / "manifest.json").read_text())
    p = ds / m["shards"][shard]["index_file"]
    np.save(p, np.array(starts, dtype="<i8"))
    m["shards"][shard].update(index_bytes=p.stat().st_size, index_sha256=sha256_file(p))
    (ds / "manifest.json").write_text(json.dumps(m))
    return p


@pytest.mark.parametrize("starts, bad, lookup", [([0, 0], 1, 0), ([0, 12], 1, 1), ([0, 40], 1, 0), ([3, 6], 0, 0),
                                                 ([0, -6], 1, 0)])
def test_document_index_not_increasing_or_past_its_shard(dataset, starts, bad, lookup):
    """The index hashes fine (a buggy writer, not a corrupt copy): verify names the first bad
    document; the reader refuses a lookup that would rely on it, in one line."""
    p = _rewrite_index(dataset, 1, starts)
    assert [str(x) for x in verify(dataset)] == [
        f"{p}: document starts are not 0, strictly increasing and inside the shard (first bad: document {bad} of the shard)"]
    ds = Dataset(dataset)  # opening reads no index, as before
    assert ds.document(0).tolist() == [10, 11, 12, 13, 14, EOS]
    with pytest.raises(ShardFormatError, match=f"{p.name}: document {lookup} of the shard spans") as e:
        ds.document(2 + lookup)  # shard 1 holds documents 2 and 3
    assert "\n" not in str(e.value)
    line = assert_clean_error(shards_cli("inspect", dataset, "--doc", 2 + lookup), 1)
    assert "not inside its 12 tokens in increasing order" in line


def test_a_header_longer_than_its_file_allows(dataset):
    """A .npy header whose length field leaves too few bytes for the ids it claims."""
    m = load_manifest(dataset)
    victim = dataset / m.shards[0].file
    data = bytearray(victim.read_bytes())
    head = data[:NPY_HEADER_BYTES].decode("latin1")
    longer = bytearray((head[:-1] + "  \n").encode("latin1"))  # two more header bytes, same total size below
    struct.pack_into("<H", longer, 8, len(longer) - 10)
    victim.write_bytes(longer + bytes(data[NPY_HEADER_BYTES:-2]))
    assert victim.stat().st_size == m.shards[0].bytes
    with pytest.raises(ShardFormatError, match="a 130-byte header and 12 ids do not make its 152 bytes"):
        Dataset(dataset)
    assert [str(p) for p in verify(dataset)] == [f"{victim}: a 130-byte header and 12 ids do not make its 152 bytes"]


def test_a_huge_npy_header_is_refused_before_it_is_read(dataset):
    m = load_manifest(dataset)
    victim = dataset / m.shards[0].file
    data = bytearray(victim.read_bytes())
    data[6:12] = b"\x02\x00" + struct.pack("<I", 0xFFFFFF00)  # version 2.0: a 4 GiB header length
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardFormatError, match="header of 4,294,967,052 bytes is over the 65,545 this format allows"):
        Dataset(dataset)


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=6)
_KEYS = ["format_version", "dtype", "vocab_size", "eos_id", "eos_separates_documents", "num_tokens", "num_documents",
         "fingerprint", "stream_sha256", "tokenizer", "tokenizer.dir", "tokenizer.sha256", "shards", "shards.0",
         "shards.1.file", "shards.1.num_tokens", "shards.1.num_documents", "shards.1.bytes", "shards.1.index_file",
         "shards.1.index_bytes", "settings", "stats", "inputs", "tool", "source_bytes"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(_KEYS), value=_json)
def test_any_value_anywhere_gives_a_clean_answer(dataset, key, value):
    """Whatever JSON a sender puts at a key, readers open the dataset or refuse it in one line:
    never a traceback (info formats every value it shows, so it is the strictest reader)."""
    original = (dataset / "manifest.json").read_text()
    try:
        _edit(dataset, key, value)
        r = shards_cli("info", dataset)
        if r.exit_code != 0:
            assert_clean_error(r, 1)
        r = shards_cli("verify", dataset, "-q")
        if r.exit_code != 0:
            assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
    finally:
        (dataset / "manifest.json").write_text(original)


# -- the parent of train/ and valid/ -----------------------------------------------------------

def test_the_parent_of_train_and_valid_names_them(train_valid):
    want = (f"error: {train_valid}: holds no dataset itself but datasets {train_valid / 'train'} and "
            f"{train_valid / 'valid'}; pass one of them")
    for command in (["verify"], ["info"], ["inspect", "--doc", "0"]):
        assert assert_clean_error(shards_cli(command[0], train_valid, *command[1:]), 2) == want
    from train.dataset import BlockDataset

    with pytest.raises(ValueError) as e:
        BlockDataset(train_valid, 8)
    assert f"error: {e.value}" == want


def test_train_data_pointing_at_the_parent(train_valid, tmp_path):
    from click.testing import CliRunner

    from train.cli import main

    r = CliRunner().invoke(main, ["--data", str(train_valid), "--out", str(tmp_path / "run"), "--max-steps", "10",
                                 "--warmup", "2"])
    assert r.exit_code != 0
    assert f"{train_valid}: holds no dataset itself but datasets {train_valid / 'train'} and" in r.output
    assert "Traceback" not in r.output and "incomplete" not in r.output


def test_one_dataset_inside_and_interrupted_ones(make_dataset, tmp_path):
    make_dataset([[5, 6, EOS]], eos_id=EOS, name="outer/only")
    line = assert_clean_error(shards_cli("verify", tmp_path / "outer"), 2)
    assert line == f"error: {tmp_path / 'outer'}: holds no dataset itself but the dataset {tmp_path / 'outer' / 'only'}; pass it"
    (tmp_path / "half" / "train").mkdir(parents=True)
    (tmp_path / "half" / "train" / "shard_00000.npy.tmp").write_bytes(b"")
    line = assert_clean_error(shards_cli("verify", tmp_path / "half"), 1)
    assert line == (f"error: {tmp_path / 'half'}: holds no dataset itself, only the incomplete dataset(s) "
                    f"{tmp_path / 'half' / 'train'} (no manifest.json); was preprocess interrupted? re-run it")
    (tmp_path / "empty").mkdir()
    line = assert_clean_error(shards_cli("verify", tmp_path / "empty"), 1)
    assert line == f"error: {tmp_path / 'empty'}: incomplete dataset: no manifest.json; was preprocess interrupted? re-run it"
