"""Inert tokenizers: loading a tokenizer directory someone else wrote never runs its code and
reads only its own files (shards.tokenizer_guard)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shards import ShardFormatError
from shards.tokenizer_guard import UnsafeTokenizerError, check_inert, load_tokenizer
from tests.conftest import write_dataset
from tests.helpers import assert_clean_error, shards_cli
from tests.open_spy import opened, outside

ROOT = Path(__file__).resolve().parents[1]
EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("this code ran")
from transformers import PreTrainedTokenizerFast, PretrainedConfig


class EvilTokenizer(PreTrainedTokenizerFast):
    pass


class EvilConfig(PretrainedConfig):
    model_type = "evil"
"""


@pytest.fixture(scope="module")
def bpe_tokenizer_dir(tmp_path_factory, corpus_lines) -> Path:
    from preprocess.tokenizer import train_sentencepiece

    out = tmp_path_factory.mktemp("bpe") / "tokenizer"
    train_sentencepiece(corpus_lines[:1500], 1000, out, threads=1, character_coverage=0.98, model_type="bpe")
    return out


@pytest.fixture
def tok(tmp_path, tokenizer_dir) -> Path:
    """A private copy of the conftest tokenizer to tamper with."""
    return Path(shutil.copytree(tokenizer_dir, tmp_path / "tok"))


def _config(tok: Path, name: str = "tokenizer_config.json", **changes) -> None:
    path = tok / name
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(changes)
    path.write_text(json.dumps(data))


def _plant(tok: Path, module: str, marker: Path) -> None:
    (tok / f"{module}.py").write_text(EVIL.format(marker=str(marker)))


def test_the_marker_would_show_code_that_ran(tok, tmp_path):
    """The planted module really writes its marker when imported: the refusal tests can fail."""
    marker = tmp_path / "proof"
    _plant(tok, "tokenization_evil", marker)
    spec = importlib.util.spec_from_file_location("evil_probe", tok / "tokenization_evil.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert marker.read_text() == "this code ran"


@pytest.mark.parametrize("trained", ["unigram", "bpe"])
def test_accepts_the_tokenizers_this_project_writes(trained, tokenizer_dir, bpe_tokenizer_dir, corpus_lines):
    directory = tokenizer_dir if trained == "unigram" else bpe_tokenizer_dir
    check_inert(directory, "tok")
    t = load_tokenizer(directory, "tok")
    line = corpus_lines[7]
    assert t.decode(t.encode(line, add_special_tokens=False)) == line
    assert t.eos_token == "</s>"


@pytest.mark.parametrize("config", ["tokenizer_config.json", "config.json"])
def test_auto_map_is_refused_and_its_code_never_runs(tok, tmp_path, config):
    marker = tmp_path / "marker"
    _plant(tok, "tokenization_evil", marker)
    _plant(tok, "configuration_evil", marker)
    auto_map = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    if config == "config.json":
        auto_map["AutoConfig"] = "configuration_evil.EvilConfig"
        _config(tok, config, model_type="evil", auto_map=auto_map)
    else:
        _config(tok, config, tokenizer_class="EvilTokenizer", auto_map=auto_map)
    with pytest.raises(UnsafeTokenizerError) as e:
        load_tokenizer(tok, "--tokenizer tok")
    assert str(e.value) == (f"--tokenizer tok: {config} names custom code (auto_map); refusing to load it: this tool "
                            "never runs code from a tokenizer or model directory (use a tokenizer made of "
                            "transformers' own classes)")
    assert not marker.exists()


@pytest.mark.parametrize("config, name", [
    ("tokenizer_config.json", "EvilTokenizer"),
    ("tokenizer_config.json", "AutoModelForCausalLM"),  # transformers would getattr it and load a model
    ("config.json", "EvilTokenizerFast"),
    ("config.json", "GPT2LMHeadModel"),
])
def test_a_tokenizer_class_outside_transformers_is_refused(tok, tmp_path, config, name):
    marker = tmp_path / "marker"
    _plant(tok, "tokenization_evil", marker)
    _config(tok, config, tokenizer_class=name)
    with pytest.raises(UnsafeTokenizerError, match=f"{config} asks for tokenizer_class '{name}', which is not one of"):
        load_tokenizer(tok, "tok")
    assert not marker.exists()


def test_transformers_own_classes_pass(tok):
    for name in ("TokenizersBackend", "PreTrainedTokenizerFast", "GPT2Tokenizer", "LlamaTokenizerFast"):
        _config(tok, tokenizer_class=name)
        check_inert(tok, "tok")


@pytest.mark.parametrize("key, value", [
    ("vocab_file", "/etc/passwd"),
    ("tokenizer_file", "../outside/tokenizer.json"),
    ("merges_file", "sub/merges.txt"),
    ("init_kwargs", {"vocab_file": "/etc/hostname"}),
    ("extra", [{"spm_file": "../../x.model"}]),
    ("additional_files", ["ok.txt", "/abs.txt"]),
])
def test_a_file_key_naming_a_path_is_refused(tok, key, value):
    _config(tok, **{key: value})
    with pytest.raises(UnsafeTokenizerError, match="names a file outside the directory"):
        load_tokenizer(tok, "tok")


def test_plain_file_names_and_nulls_pass(tok):
    _config(tok, vocab_file="tokenizer.model", tokenizer_file=None, additional_files=["tokenizer.json"])
    check_inert(tok, "tok")


def test_a_symlink_leaving_the_directory_is_refused(tok, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (tok / "notes.txt").symlink_to(secret)  # preprocess copies a tokenizer directory into the dataset
    with opened() as seen:
        with pytest.raises(UnsafeTokenizerError, match=f"notes.txt: a symlink to {secret}, outside"):
            load_tokenizer(tok, "tok")
    assert str(secret) not in seen


def test_symlinks_inside_and_a_symlinked_directory_pass(tok, tmp_path):
    (tok / "alias.json").symlink_to("tokenizer.json")
    (tmp_path / "final").symlink_to(tok, target_is_directory=True)  # e.g. RUN/final linked elsewhere
    load_tokenizer(tmp_path / "final", "final")


def test_a_fifo_is_refused_before_anything_opens_it(tok):
    (tok / "tokenizer.json").unlink()
    os.mkfifo(tok / "tokenizer.json")  # transformers would block on it forever
    with pytest.raises(UnsafeTokenizerError, match=r"tokenizer.json: not a regular file \(a FIFO\)"):
        load_tokenizer(tok, "tok")


def test_a_hub_cache_snapshot_is_refused(tok, tmp_path):
    """Hugging Face's cache links snapshot files into the repository's blobs/, outside the
    snapshot: refused like any link leaving a tokenizer directory, by `shards import` too."""
    repo = tmp_path / "models--team--tok"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in tok.iterdir():
        shutil.copyfile(f, repo / "blobs" / f.name)
        (snapshot / f.name).symlink_to(Path("..") / ".." / "blobs" / f.name)
    with pytest.raises(UnsafeTokenizerError, match="outside the tokenizer directory"):
        check_inert(snapshot, "hub")
    (tmp_path / "a.bin").write_bytes(bytes(8))
    line = assert_clean_error(shards_cli("import", tmp_path / "a.bin", "--tokenizer", snapshot,
                                         "--out", tmp_path / "ds"), 1)
    assert "a symlink to" in line and "outside the tokenizer directory" in line and "copy the file in" in line, line
    assert not (tmp_path / "ds").exists()


def test_not_a_directory(tmp_path):
    with pytest.raises(ShardFormatError, match="nope: not a tokenizer directory"):
        load_tokenizer(tmp_path / "nope", "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ShardFormatError, match="not a tokenizer directory"):
        load_tokenizer(tmp_path / "file", "file")


def test_only_the_tokenizers_own_files_are_read(make_dataset, tmp_path):
    """Python-level opens while loading a dataset's tokenizer stay inside DIR/tokenizer."""
    ds = make_dataset([[5, 6, 2]], eos_id=2)
    with opened() as seen:
        load_tokenizer(ds / "tokenizer", "ds/tokenizer")
    assert any(p.endswith("tokenizer.json") or p.endswith("tokenizer_config.json") for p in seen)
    assert outside(seen, tmp_path, [ds / "tokenizer"]) == []


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_only_the_tokenizers_own_files_are_read_natively(make_dataset, tmp_path):
    """Under strace every open of the process counts, the Rust tokenizers library's too."""
    ds = make_dataset([[5, 6, 2]], eos_id=2)
    log = tmp_path / "strace.log"
    code = "import sys; from shards.tokenizer_guard import load_tokenizer; load_tokenizer(sys.argv[1], 'tok')"
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", str(log), sys.executable,
                        "-c", code, str(ds / "tokenizer")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "ptrace" in r.stderr.lower():
        pytest.skip(f"strace cannot trace here: {r.stderr.strip()[:100]}")
    assert r.returncode == 0, r.stderr
    paths = [os.path.join(ROOT, p) for p in re.findall(r'open(?:at2?)?\((?:AT_FDCWD, )?"([^"]+)"', log.read_text())]
    seen = [os.path.realpath(p) for p in paths]
    assert any(p.endswith("tokenizer.json") for p in seen), "strace saw no tokenizer file: the check would be empty"
    assert outside(seen, tmp_path, [ds / "tokenizer"]) == []


def _evil_dataset(tmp_path: Path, tokenizer_dir: Path) -> tuple[Path, Path]:
    """A dataset whose shipped tokenizer asks for custom code; its hashes match (made that way)."""
    evil, marker = tmp_path / "evil-tok", tmp_path / "marker"
    shutil.copytree(tokenizer_dir, evil)
    _plant(evil, "tokenization_evil", marker)
    _config(evil, tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]})
    ds = tmp_path / "ds"
    write_dataset(ds, [[5, 6, 2], [7, 2]], vocab_size=1000, shard_tokens=50, tokenizer_dir=evil, eos_id=2)
    return ds, marker


def test_commands_refuse_a_dataset_with_custom_tokenizer_code(tmp_path, tokenizer_dir):
    """The bytes are what the manifest says, but its code never runs: verify reports it (it passed
    before, and inspect then refused the dataset it had called intact), inspect refuses it."""
    ds, marker = _evil_dataset(tmp_path, tokenizer_dir)
    refusal = f"error: {ds / 'tokenizer'}: tokenizer_config.json names custom code (auto_map)"
    for flags in ([], ["--tokenizer-roundtrip"]):
        r = shards_cli("verify", ds, *flags)
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        first, summary = r.stderr.strip().splitlines()
        assert first.startswith(refusal) and summary.startswith(f"{ds}: 1 problem(s) found"), r.stderr
    line = assert_clean_error(shards_cli("inspect", ds, "--doc", "0"), 1)
    assert line.startswith(refusal)
    assert not marker.exists()


def test_no_code_path_sets_trust_remote_code():
    """The one switch that would run a directory's code: nowhere in the project's sources."""
    for package in ("shards", "preprocess", "train"):
        for source in (ROOT / package).rglob("*.py"):
            assert not re.search(r"trust_remote_code\s*=\s*True", source.read_text()), source
