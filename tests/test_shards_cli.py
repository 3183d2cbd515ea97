"""The `shards` command through click's CliRunner, and the start-up cost of all three commands."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shards import Dataset, load_manifest
from shards.layout import NPY_HEADER_BYTES
from tests.helpers import assert_clean_error, shards_cli

EOS = 2  # "</s>" in the conftest tokenizer


@pytest.fixture
def text_dataset(make_dataset, tokenizer_dir, corpus_lines) -> tuple[Path, list[str]]:
    """Twelve real lines encoded with the embedded tokenizer, EOS after each."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    lines = corpus_lines[100:112]
    docs = [tok.encode(line, add_special_tokens=False) + [EOS] for line in lines]
    return make_dataset(docs, shard_tokens=100, eos_id=EOS), lines


def test_info_human_shows_fingerprint_first(text_dataset):
    path, lines = text_dataset
    r = shards_cli("info", path)
    assert r.exit_code == 0, r.output
    m = load_manifest(path)
    first = r.stdout.splitlines()[0]
    assert first.split() == ["fingerprint", m.fingerprint]
    assert f"documents     {len(lines)}" in r.stdout
    assert f"{m.num_tokens:,}" in r.stdout and "uint16" in r.stdout


def test_info_json(text_dataset):
    path, lines = text_dataset
    r = shards_cli("info", path, "--json")
    assert r.exit_code == 0, r.output
    facts = json.loads(r.stdout)
    m = load_manifest(path)
    assert facts["fingerprint"] == m.fingerprint
    assert facts["num_tokens"] == m.num_tokens == sum(s["num_tokens"] for s in facts["shards"])
    assert facts["num_documents"] == len(lines)
    assert facts["dtype"] == "uint16" and facts["vocab_size"] == 1000
    assert [s["file"] for s in facts["shards"]] == [s.file for s in m.shards]


def test_verify_ok(text_dataset):
    path, _ = text_dataset
    r = shards_cli("verify", path)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("ok: ") and load_manifest(path).fingerprint in r.stdout
    r = shards_cli("verify", path, "--quiet")
    assert r.exit_code == 0 and r.output == ""


def test_verify_names_each_bad_shard(text_dataset):
    path, _ = text_dataset
    m = load_manifest(path)
    flipped, truncated = path / m.shards[0].file, path / m.shards[2].file
    data = bytearray(flipped.read_bytes())
    data[NPY_HEADER_BYTES] ^= 0x01
    flipped.write_bytes(bytes(data))
    os.truncate(truncated, truncated.stat().st_size - 2)
    r = shards_cli("verify", path)
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"error: {flipped}: sha256 mismatch (corrupted bytes)"
    assert lines[1].startswith(f"error: {truncated}: size ")
    assert lines[2] == f"{path}: 2 problem(s) found"
    assert len(lines) == 3 and "Traceback" not in r.output


def test_inspect_doc_decodes_with_the_embedded_tokenizer(text_dataset):
    path, lines = text_dataset
    ds = Dataset(path)
    for d in (0, 5, len(lines) - 1):
        r = shards_cli("inspect", path, "--doc", d)
        assert r.exit_code == 0, r.output
        a, b = ds.document_span(d)
        out = r.stdout.splitlines()
        assert out[0] == f"document {d}: tokens [{a}, {b}) ({b - a} tokens)"
        assert out[1] == f"ids: {ds.document(d).tolist()}"
        assert "\n".join(out[2:]) == lines[d] + "</s>"
    r = shards_cli("inspect", path, "--doc", 1, "--no-ids")
    assert r.stdout.splitlines()[1:] == [lines[1] + "</s>"]


def test_inspect_token_range_across_shards(text_dataset):
    path, lines = text_dataset
    ds = Dataset(path)
    a, b = ds.document_span(3)[0], ds.document_span(4)[1]
    assert len(ds.manifest.shards) > 1
    r = shards_cli("inspect", path, "--tokens", f"{a}:{b}")
    assert r.exit_code == 0, r.output
    out = r.stdout.splitlines()
    assert out[0] == f"tokens [{a}, {b})"
    assert out[1] == f"ids: {ds.read(a, b).tolist()}"
    assert "\n".join(out[2:]) == lines[3] + "</s>" + lines[4] + "</s>"


def test_missing_directory(tmp_path):
    line = assert_clean_error(shards_cli("info", tmp_path / "nope"), 1)
    assert "no such dataset directory" in line
    assert_clean_error(shards_cli("verify", tmp_path / "nope"), 1)
    assert_clean_error(shards_cli("inspect", tmp_path / "nope", "--doc", 0), 1)


@pytest.mark.parametrize("command", [["info"], ["info", "--json"], ["verify"], ["inspect", "--doc", "0"]])
def test_no_manifest(text_dataset, command):
    path, _ = text_dataset
    (path / "manifest.json").unlink()
    line = assert_clean_error(shards_cli(command[0], path, *command[1:]), 1)
    assert line == f"error: {path}: incomplete dataset: no manifest.json; was preprocess interrupted? re-run it"


@pytest.mark.parametrize("command", [["info"], ["verify"], ["inspect", "--tokens", "0:3"]])
def test_bad_json(text_dataset, command):
    path, _ = text_dataset
    (path / "manifest.json").write_text("{not json")
    line = assert_clean_error(shards_cli(command[0], path, *command[1:]), 1)
    assert "manifest.json: not valid JSON" in line


def test_truncated_shard_is_bad_data(text_dataset):
    path, _ = text_dataset
    victim = path / load_manifest(path).shards[1].file
    os.truncate(victim, 130)
    for command in (["info"], ["inspect", "--doc", "0"]):
        line = assert_clean_error(shards_cli(command[0], path, *command[1:]), 1)
        assert str(victim) in line


@pytest.mark.parametrize("args, message", [
    (["--doc", "12"], "--doc 12: the dataset has 12 documents"),
    (["--doc", "-1"], "--doc -1"),
    (["--tokens", "5:3"], "--tokens 5:3: need 0 <= A < B <="),
    (["--tokens", "0:100000"], "--tokens 0:100000"),
    (["--tokens", "7"], "--tokens: expected A:B"),
    ([], "give exactly one of --doc N or --tokens A:B"),
    (["--doc", "1", "--tokens", "0:3"], "give exactly one of --doc N or --tokens A:B"),
])
def test_inspect_bad_usage(text_dataset, args, message):
    path, _ = text_dataset
    line = assert_clean_error(shards_cli("inspect", path, *args), 2)
    assert message in line


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["shards", "preprocess", "train"])
def test_help_runs_in_a_fresh_process(module):
    if importlib.util.find_spec(f"{module}.cli") is None:
        pytest.skip(f"{module}.cli does not exist yet")
    r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: ") and r.stderr == ""


def test_help_of_every_shards_subcommand():
    for sub in ("info", "verify", "inspect"):
        r = shards_cli(sub, "--help")
        assert r.exit_code == 0 and "Usage: " in r.stdout


def test_cli_modules_do_not_import_torch_or_transformers():
    code = ("import sys, shards.cli, preprocess.cli\n"
            "print(sorted(m for m in ('torch', 'transformers', 'tokenizers', 'sentencepiece') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_info_on_a_minimal_manifest(text_dataset):
    """Only the required keys: what validation accepts, info must show without crashing."""
    path, _ = text_dataset
    m = json.loads((path / "manifest.json").read_text())
    for key in ("tool", "eos_id", "eos_separates_documents", "settings", "stats", "source_bytes", "inputs"):
        del m[key]
    (path / "manifest.json").write_text(json.dumps(m))
    r = shards_cli("info", path)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].split() == ["fingerprint", m["fingerprint"]]


def test_inspect_without_the_tokenizer(text_dataset):
    import shutil

    path, _ = text_dataset
    shutil.rmtree(path / "tokenizer")
    line = assert_clean_error(shards_cli("inspect", path, "--doc", 0), 1)
    assert line == f"error: {path / 'tokenizer'}: the dataset's tokenizer is missing; re-copy the dataset"
    (path / "tokenizer").mkdir()
    (path / "tokenizer" / "tokenizer_config.json").write_text("{broken")
    line = assert_clean_error(shards_cli("inspect", path, "--doc", 0), 1)
    assert line.startswith(f"error: {path / 'tokenizer'}: tokenizer_config.json is not valid JSON")
