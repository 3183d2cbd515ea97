"""Sharing datasets: llm.c/nanoGPT export and import, part/merge, and the read-only guarantee."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from shards import Dataset
from shards.cli import main as shards_cli
from tests.conftest import train_args
from tests.helpers import tree_bytes

ROOT = Path(__file__).resolve().parents[1]


def _shards(*args):
    return CliRunner().invoke(shards_cli, [str(a) for a in args])


def _stream(path) -> np.ndarray:
    ds = Dataset(path)
    return ds.read(0, ds.num_tokens)


@pytest.mark.parametrize("fmt", ["llmc", "nanogpt"])
def test_export_import_round_trip(train_valid, tmp_path, fmt):
    src = train_valid / "train"
    out = _shards("export", src, "--format", fmt, "--out", tmp_path / "bins")
    assert out.exit_code == 0, out.output
    files = sorted((tmp_path / "bins").glob("*.bin"))
    assert len(files) == (len(Dataset(src).manifest.shards) if fmt == "llmc" else 1)
    back = _shards("import", *files, "--tokenizer", src / "tokenizer", "--out", tmp_path / "back",
                   "--shard-tokens", "7000")
    assert back.exit_code == 0, back.output
    assert np.array_equal(_stream(tmp_path / "back"), _stream(src))
    assert Dataset(tmp_path / "back").fingerprint == Dataset(src).fingerprint
    # EOS ends documents, so the document count survives the trip too.
    assert Dataset(tmp_path / "back").num_documents == Dataset(src).num_documents
    assert _shards("verify", tmp_path / "back").exit_code == 0


def test_llmc_header_written_by_hand_is_read(tmp_path, tokenizer_dir):
    tokens = np.array([5, 6, 7, 2, 8, 9, 2, 10], dtype="<u2")
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    (tmp_path / "a.bin").write_bytes(header.tobytes() + tokens.tobytes())
    result = _shards("import", tmp_path / "a.bin", "--tokenizer", tokenizer_dir, "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    ds = Dataset(tmp_path / "ds")
    assert ds.read(0, ds.num_tokens).tolist() == tokens.tolist()
    assert ds.num_documents == 3 and ds.document(1).tolist() == [8, 9, 2]  # EOS (id 2) ends documents


@pytest.mark.parametrize("damage, message", [
    (lambda h, t: (h.__setitem__(0, 1234), t), "bad magic"),
    (lambda h, t: (h.__setitem__(1, 2), t), "version 2"),
    (lambda h, t: (h.__setitem__(2, 99), t), "truncated"),
])
def test_llmc_header_checked(tmp_path, tokenizer_dir, damage, message):
    tokens = np.arange(10, dtype="<u2")
    header = np.zeros(256, dtype="<i4")
    header[:3] = (20240520, 1, len(tokens))
    damage(header, tokens)
    (tmp_path / "a.bin").write_bytes(header.tobytes() + tokens.tobytes())
    result = _shards("import", tmp_path / "a.bin", "--tokenizer", tokenizer_dir, "--out", tmp_path / "ds",
                     "--format", "llmc")
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_merge_redoes_a_killed_merge_but_never_takes_a_foreign_directory(make_dataset, tmp_path):
    """A merge marks --out while it writes (.incomplete): a rerun clears what a killed run left
    (even a manifest written just before the kill) and merges again; an unmarked non-empty
    directory is someone else's and is refused."""
    a = make_dataset([[5, 6, 2], [7, 2]], name="a")
    b = make_dataset([[8, 9, 10, 2]], name="b")
    clean = _shards("merge", a, b, "--out", tmp_path / "clean")
    assert clean.exit_code == 0, clean.output
    assert not (tmp_path / "clean" / ".incomplete").exists()
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / ".incomplete").write_text("shards merge\n")
    (killed / "shard_00000.npy").write_bytes(b"half")
    (killed / "manifest.json").write_text("{}")
    again = _shards("merge", a, b, "--out", killed)
    assert again.exit_code == 0, again.output
    assert tree_bytes(killed) == tree_bytes(tmp_path / "clean")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = _shards("merge", a, b, "--out", foreign)
    assert refused.exit_code == 2 and "not empty" in refused.output
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_parts_merge_to_the_single_run(tmp_path, corpus_lines, tokenizer_dir, n):
    from preprocess.cli import main as preprocess

    # Two inputs, CRLF line ends in one, so part borders fall inside files and between them.
    (tmp_path / "a.txt").write_text("\r\n".join(corpus_lines[:300]) + "\r\n", encoding="utf-8", newline="")
    (tmp_path / "b.txt").write_text("\n".join(corpus_lines[300:500]) + "\n", encoding="utf-8")
    common = [str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--tokenizer", str(tokenizer_dir), "-w", "0", "-q",
              "--shard-tokens", "3000"]
    assert CliRunner().invoke(preprocess, common + ["--out", str(tmp_path / "single")]).exit_code == 0
    parts = []
    for k in range(n):
        r = CliRunner().invoke(preprocess, common + ["--out", str(tmp_path / f"p{k}"), "--part", f"{k}/{n}"])
        assert r.exit_code == 0, r.output
        parts.append(tmp_path / f"p{k}")
    merged = _shards("merge", *reversed(parts), "--out", tmp_path / "merged")  # any order: sorted by K
    assert merged.exit_code == 0, merged.output
    single, whole = Dataset(tmp_path / "single"), Dataset(tmp_path / "merged")
    assert whole.fingerprint == single.fingerprint
    assert np.array_equal(_stream(tmp_path / "merged"), _stream(tmp_path / "single"))
    assert whole.num_documents == single.num_documents
    assert whole.manifest.raw["inputs"] == single.manifest.raw["inputs"]
    # Hard links, not copies: the merged shards are the parts' files.
    first = whole.path / whole.manifest.shards[0].file
    assert os.stat(first).st_nlink == 2
    assert _shards("verify", tmp_path / "merged").exit_code == 0


def test_merge_refuses_missing_parts_and_other_tokenizers(tmp_path, corpus_lines, tokenizer_dir, train_valid):
    from preprocess.cli import main as preprocess

    (tmp_path / "a.txt").write_text("\n".join(corpus_lines[:200]) + "\n", encoding="utf-8")
    for k in (0, 2):
        CliRunner().invoke(preprocess, [str(tmp_path / "a.txt"), "--tokenizer", str(tokenizer_dir), "-w", "0", "-q",
                                        "--out", str(tmp_path / f"p{k}"), "--part", f"{k}/3"])
    missing = _shards("merge", tmp_path / "p0", tmp_path / "p2", "--out", tmp_path / "m")
    assert missing.exit_code == 2 and "exactly once" in missing.output
    train_sentencepiece_dir = tmp_path / "tok2"
    from preprocess.tokenizer import train_sentencepiece

    train_sentencepiece(corpus_lines[:700], 1100, train_sentencepiece_dir, threads=1, character_coverage=0.98)
    CliRunner().invoke(preprocess, [str(tmp_path / "a.txt"), "--tokenizer", str(train_sentencepiece_dir), "-w", "0",
                                    "-q", "--out", str(tmp_path / "other")])
    mixed = _shards("merge", train_valid / "train", tmp_path / "other", "--out", tmp_path / "m2")
    assert mixed.exit_code == 2 and "different tokenizers" in mixed.output


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_training_never_writes_into_a_dataset(train_valid, tmp_path):
    """Two trainings and a `shards verify` read one dataset at once; every file is unchanged."""
    before = _snapshot(train_valid)
    dirs_before = sorted(str(p) for p in train_valid.rglob("*"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "train", *train_args(train_valid, tmp_path / f"run{i}"),
                               "--max-steps", "8", "--workers", "1"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    procs.append(subprocess.Popen([sys.executable, "-m", "shards", "verify", str(train_valid / "train")], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    assert _snapshot(train_valid) == before
    assert sorted(str(p) for p in train_valid.rglob("*")) == dirs_before  # nothing added either


def test_parts_without_documents_still_merge(tmp_path, corpus_lines, tokenizer_dir):
    """More parts than compressed files: some parts get nothing, and the merge is still whole."""
    import gzip

    from preprocess.cli import main as preprocess

    files = []
    for i in range(2):
        f = tmp_path / f"c{i}.txt.gz"
        f.write_bytes(gzip.compress(("\n".join(corpus_lines[i * 100:(i + 1) * 100]) + "\n").encode()))
        files.append(str(f))
    common = files + ["--tokenizer", str(tokenizer_dir), "-w", "0", "-q", "--valid-fraction", "0.2"]
    assert CliRunner().invoke(preprocess, common + ["--out", str(tmp_path / "single")]).exit_code == 0
    for k in range(5):
        r = CliRunner().invoke(preprocess, common + ["--out", str(tmp_path / f"p{k}"), "--part", f"{k}/5"])
        assert r.exit_code == 0, r.output
    empty = [k for k in range(5) if Dataset(tmp_path / f"p{k}" / "train").num_tokens == 0]
    assert len(empty) >= 3
    for split in ("train", "valid"):
        merged = _shards("merge", *[tmp_path / f"p{k}" / split for k in range(5)], "--out", tmp_path / f"m-{split}")
        assert merged.exit_code == 0, merged.output
        assert Dataset(tmp_path / f"m-{split}").fingerprint == Dataset(tmp_path / "single" / split).fingerprint


def test_merge_takes_minimal_manifests_and_parts_with_their_own_tokenizer_dir(make_dataset, tmp_path):
    """A manifest with only the required keys, and a part whose tokenizer lives under another
    name, merge into a dataset that verifies (they raised KeyError / lost the tokenizer)."""
    import json
    import shutil

    a = make_dataset([[5, 6, 2], [7, 2]], name="a", eos_id=2)
    b = make_dataset([[8, 9, 10, 2]], name="b", eos_id=2)
    for part in (a, b):
        m = json.loads((part / "manifest.json").read_text())
        for key in ("tool", "eos_id", "eos_separates_documents", "settings", "stats", "source_bytes", "inputs"):
            del m[key]
        (part / "manifest.json").write_text(json.dumps(m))
    shutil.move(a / "tokenizer", a / "tok2")
    m = json.loads((a / "manifest.json").read_text())
    m["tokenizer"]["dir"] = "tok2"
    (a / "manifest.json").write_text(json.dumps(m))
    r = _shards("merge", a, b, "--out", tmp_path / "m")
    assert r.exit_code == 0, r.output
    assert _shards("verify", tmp_path / "m").exit_code == 0
    assert (tmp_path / "m" / "tokenizer").is_dir()
    assert list(_stream(tmp_path / "m")) == [5, 6, 2, 7, 2, 8, 9, 10, 2]
