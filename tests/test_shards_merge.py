"""`shards merge` takes nothing from a part that the part's own manifest does not vouch for: the
merged dataset verifies and has the fingerprint its parts name, or there is no merged dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from shards import Dataset, ShardFormatError, verify
from shards import merge as merge_module
from tests.helpers import assert_clean_error, shards_cli


@pytest.fixture
def parts(make_dataset) -> tuple[Path, Path]:
    return make_dataset([[5, 6, 2], [7, 2]], name="a", eos_id=2), make_dataset([[8, 9, 10, 2]], name="b", eos_id=2)


def test_a_part_whose_tokenizer_files_differ_from_its_manifest_is_refused(parts, tmp_path):
    """The parts' manifests agree on the tokenizer's hash; the first part's files do not match it
    (edited after preprocess). Copying them would make a dataset that verifies but names another
    tokenizer in its fingerprint."""
    a, b = parts
    config = a / "tokenizer" / "tokenizer_config.json"
    config.write_text(config.read_text() + " ")
    out = tmp_path / "m"
    line = assert_clean_error(shards_cli("merge", a, b, "--out", out), 1)
    assert line.startswith(f"error: {a / 'tokenizer'}: ") and "sha256" in line and f"shards verify {a}" in line, line
    assert not out.exists()


def test_a_part_whose_document_index_differs_from_its_manifest_is_refused(parts, tmp_path):
    a, b = parts
    index = a / Dataset(a).manifest.shards[0].index_file
    data = bytearray(index.read_bytes())
    data[-1] ^= 0x01  # the last document's start, same size: only the hash can tell
    index.write_bytes(bytes(data))
    out = tmp_path / "m"
    line = assert_clean_error(shards_cli("merge", a, b, "--out", out), 1)
    assert line == f"error: {index}: sha256 differs from its manifest; run `shards verify {a}`"
    assert not out.exists()


def test_merged_parts_verify_and_keep_their_fingerprint(parts, tmp_path):
    """The checks above refuse only what is wrong: intact parts still merge into a sound dataset."""
    a, b = parts
    assert shards_cli("merge", a, b, "--out", tmp_path / "m").exit_code == 0
    assert verify(tmp_path / "m") == []
    assert Dataset(tmp_path / "m").manifest.tokenizer_sha256 == Dataset(a).manifest.tokenizer_sha256


def test_an_invalid_merged_manifest_is_never_written(parts, tmp_path, monkeypatch):
    """A manifest that fails validation (here: inputs that are not a list) is
    refused before it is written, so nothing is left that looks complete."""
    a, b = parts
    build = merge_module.build_manifest

    def broken(*args, **kwargs):
        manifest = build(*args, **kwargs)
        manifest["inputs"] = "not a list"
        return manifest

    monkeypatch.setattr(merge_module, "build_manifest", broken)
    out = tmp_path / "m"
    with pytest.raises(ShardFormatError, match="inputs must be a JSON array"):
        merge_module.merge([a, b], out)
    assert not (out / "manifest.json").exists()
    assert not out.exists()
