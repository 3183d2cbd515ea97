"""llm.c's formats both ways: both header variants, EOS-first data as llm.c's fineweb.py writes it,
files cut at document boundaries (--tokens-per-file), and one-line refusals that name the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from shards import Dataset
from tests.helpers import assert_clean_error, shards_cli, stream
from tests.llmc_reference import fineweb_shards, write_datafile

EOS, BOS = 2, 1  # the conftest SentencePiece tokenizer's </s> and <s>


@pytest.fixture(scope="module")
def encoded(corpus_lines, tokenizer_dir) -> tuple[list[list[int]], list[str]]:
    """The first 60 documents of the sample corpus, encoded with the conftest tokenizer."""
    from shards.tokenizer_guard import load_tokenizer

    tok = load_tokenizer(tokenizer_dir, "test")
    texts = corpus_lines[:60]
    return [tok.encode(t, add_special_tokens=False) for t in texts], texts


@pytest.fixture(scope="module")
def big_tokenizer(tmp_path_factory) -> Path:
    """A 70,002-token word-level tokenizer: ids past 65,535 need llm.c's uint32 (Llama-3) variant."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(70_000)} | {"</s>": 70_000, "<s>": 70_001}
    core = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    out = tmp_path_factory.mktemp("bigtok") / "tokenizer"
    fast = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", bos_token="<s>", unk_token="w0")
    fast.save_pretrained(out)
    return out


def _header(path: Path) -> list[int]:
    return np.fromfile(path, dtype="<i4", count=256).tolist()


# -- both header variants ------------------------------------------------------------------

def test_llama3_file_is_read_by_its_magic_under_auto(tmp_path, tokenizer_dir, encoded):
    """The issue's case: a Llama-3 file (magic 20240801, uint32) under --format auto is read as
    uint32 tokens, not its header as uint16 ids."""
    docs, _ = encoded
    flat = [t for d in docs[:10] for t in d + [EOS]]
    write_datafile(tmp_path / "l3.bin", flat, "llama-3")
    assert _header(tmp_path / "l3.bin")[:3] == [20240801, 7, len(flat)]
    r = shards_cli("import", tmp_path / "l3.bin", "--tokenizer", tokenizer_dir, "--out", tmp_path / "ds")
    assert r.exit_code == 0, r.output
    assert stream(tmp_path / "ds").tolist() == flat
    ds = Dataset(tmp_path / "ds")
    assert ds.num_documents == 10 and ds.document(0).tolist() == docs[0] + [EOS]
    assert ds.manifest.raw["inputs"][0]["format"] == "llmc-llama-3"


def test_uint32_dataset_exports_as_llama3_and_comes_back(make_dataset, tmp_path, big_tokenizer):
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(0, 70_000, int(rng.integers(1, 30)))) + [70_000] for _ in range(40)]
    src = make_dataset(docs, vocab_size=70_002, shard_tokens=200, eos_id=70_000)
    shutil.rmtree(src / "tokenizer")  # the dataset's tokenizer must be the one that knows these ids
    shutil.copytree(big_tokenizer, src / "tokenizer")
    out = tmp_path / "bins"
    r = shards_cli("export", src, "--format", "llmc", "--out", out)
    assert r.exit_code == 0, r.output
    assert "llama-3" in r.output
    files = sorted(out.glob("data_*.bin"))
    assert len(files) == len(Dataset(src).manifest.shards)
    for f in files:
        magic, version, count = _header(f)[:3]
        assert (magic, version) == (20240801, 7)
        assert f.stat().st_size == 1024 + 4 * count  # uint32 ids after the 1,024-byte header
    payload = np.concatenate([np.fromfile(f, dtype="<u4", offset=1024) for f in files])
    assert np.array_equal(payload, stream(src))
    assert int(payload.max()) >= 1 << 16  # ids a uint16 file would have truncated
    back = shards_cli("import", *files, "--tokenizer", big_tokenizer, "--out", tmp_path / "back")
    assert back.exit_code == 0, back.output
    assert np.array_equal(stream(tmp_path / "back"), stream(src))
    assert Dataset(tmp_path / "back").num_documents == len(docs)


def test_gpt2_variant_still_written_for_uint16(train_valid, tmp_path):
    r = shards_cli("export", train_valid / "train", "--format", "llmc", "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    f = sorted((tmp_path / "b").glob("data_*.bin"))[0]
    magic, version, count = _header(f)[:3]
    assert (magic, version) == (20240520, 1) and f.stat().st_size == 1024 + 2 * count


def test_nanogpt_export_refuses_uint32(make_dataset, tmp_path):
    path = make_dataset([np.array([70_000, 1, 2])], vocab_size=70_001)
    line = assert_clean_error(shards_cli("export", path, "--format", "nanogpt", "--out", tmp_path / "x"), 2)
    assert "uint32" in line and "--format llmc" in line
    assert not (tmp_path / "x").exists()


# -- refusals: one line naming the file and what was wrong ---------------------------------

def _bin(path: Path, magic: int, version: int, count: int, payload: np.ndarray) -> Path:
    h = np.zeros(256, dtype="<i4")
    h[:3] = (magic, version, count)
    path.write_bytes(h.tobytes() + payload.tobytes())
    return path


REFUSALS = {
    # name: (writer, format, words the line must hold)
    "unknown magic": (lambda p: _bin(p, 20240522, 1, 10, np.arange(10, dtype="<u2")), "auto",
                      ["bad magic 20240522", "20240520", "20240801"]),
    "gpt-2 wrong version": (lambda p: _bin(p, 20240520, 2, 10, np.arange(10, dtype="<u2")), "auto",
                            ["version 2", "version 1"]),
    "llama-3 wrong version": (lambda p: _bin(p, 20240801, 1, 10, np.arange(10, dtype="<u4")), "auto",
                              ["version 1", "version 7"]),
    "size above the header": (lambda p: _bin(p, 20240520, 1, 9, np.arange(10, dtype="<u2")), "auto",
                              ["header says 9", "1,044 bytes"]),
    "truncated llama-3": (lambda p: _bin(p, 20240801, 7, 12, np.arange(10, dtype="<u4")), "auto",
                          ["header says 12", "truncated"]),
    "raw ids past the vocabulary": (lambda p: (p.write_bytes(np.array([5, 6, 2, 4000, 7], "<u2").tobytes()), p)[1],
                                    "auto", ["token id 4,000 at token 3", "outside the vocabulary", "raw uint16"]),
    "llama-3 read as raw": (lambda p: _bin(p, 20240801, 7, 4, np.array([5, 6, 2, 7], "<u4")), "nanogpt",
                            ["outside the vocabulary", "magic 20240801", "not nanogpt"]),
    "not a multiple of 2 bytes": (lambda p: (p.write_bytes(b"\x05\x00\x06"), p)[1], "auto",
                                  ["3 bytes", "uint16"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_import_refuses_with_one_line_naming_the_file(tmp_path, tokenizer_dir, case):
    write, fmt, words = REFUSALS[case]
    good = tmp_path / "good.bin"  # raw uint16, read the same under every --format but llmc
    good.write_bytes(np.array([5, 6, 2], "<u2").tobytes())
    bad = write(tmp_path / "bad.bin")
    r = shards_cli("import", good, bad, "--tokenizer", tokenizer_dir, "--out", tmp_path / "ds", "--format", fmt)
    line = assert_clean_error(r, 1)
    assert line.startswith(f"error: {bad}: "), line
    for w in words:
        assert w in line, (w, line)
    assert not (tmp_path / "ds").exists()  # nothing written, not even an empty directory


def test_import_refuses_a_tokenizer_that_names_code(tmp_path, tokenizer_dir):
    tok = tmp_path / "tok"
    shutil.copytree(tokenizer_dir, tok)
    cfg = json.loads((tok / "tokenizer_config.json").read_text())
    cfg["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (tok / "tokenizer_config.json").write_text(json.dumps(cfg))
    f = _bin(tmp_path / "a.bin", 20240520, 1, 3, np.array([5, 6, 2], "<u2"))
    line = assert_clean_error(shards_cli("import", f, "--tokenizer", tok, "--out", tmp_path / "ds"), 1)
    assert "auto_map" in line and f"--tokenizer {tok}" in line


# -- EOS-first data, as llm.c's fineweb.py writes it ---------------------------------------

def _inspect_doc(path: Path, d: int) -> tuple[list[int], str]:
    r = shards_cli("inspect", path, "--doc", d)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    ids = json.loads(lines[1].removeprefix("ids: "))
    return ids, "\n".join(lines[2:])


@pytest.mark.parametrize("model_desc, delim", [("gpt-2", EOS), ("llama-3", BOS)])
def test_eos_first_fineweb_files_give_the_documents(tmp_path, tokenizer_dir, encoded, model_desc, delim):
    """fineweb.py puts the delimiter before each document and cuts files inside documents
    (gpt-2: <|endoftext|>, the EOS; llama-3: tokenizer.encode('')[0], the BOS)."""
    docs, texts = encoded
    files = fineweb_shards(docs, delim, tmp_path, shard_size=700, model_desc=model_desc)
    assert len(files) >= 3 and files[0].name.startswith("fineweb_val_")
    r = shards_cli("import", *files, "--tokenizer", tokenizer_dir, "--out", tmp_path / "ds", "--eos-first",
                   "--shard-tokens", "500")
    assert r.exit_code == 0, r.output
    ids, text = _inspect_doc(tmp_path / "ds", 0)
    assert ids == [delim] + docs[0]  # the first document, not a lone delimiter
    assert text.endswith(texts[0]) and len(text) > len(texts[0])
    ds = Dataset(tmp_path / "ds")
    assert ds.num_documents == len(docs)
    assert all(ds.document(i).tolist() == [delim] + d for i, d in enumerate(docs))
    # The token stream is the files' tokens unchanged, so exporting gives llm.c its data back.
    raw = np.concatenate([np.fromfile(f, dtype=np.uint16 if model_desc == "gpt-2" else np.uint32, offset=1024)
                          for f in files])
    assert np.array_equal(stream(tmp_path / "ds"), raw)
    m = ds.manifest
    assert m.raw["settings"]["eos_first"] is True and m.eos_id == delim and not m.eos_separates_documents
    if delim == BOS:
        assert "BOS" in r.output  # the delimiter it chose is said


def test_without_eos_first_the_boundaries_shift_and_a_note_says_why(tmp_path, tokenizer_dir, encoded):
    docs, _ = encoded
    files = fineweb_shards(docs, EOS, tmp_path, shard_size=700)
    r = shards_cli("import", *files, "--tokenizer", tokenizer_dir, "--out", tmp_path / "ds")
    assert r.exit_code == 0, r.output
    assert "--eos-first" in r.stderr
    assert _inspect_doc(tmp_path / "ds", 0)[0] == [EOS]  # what --eos-first is for


def test_eos_first_train_files_alone_start_with_a_partial_document(tmp_path, tokenizer_dir, encoded):
    """fineweb.py's train files follow its val file: the first one begins inside a document."""
    docs, _ = encoded
    files = fineweb_shards(docs, EOS, tmp_path, shard_size=700)
    train = files[1:]
    head = np.fromfile(train[0], dtype=np.uint16, offset=1024)
    assert head[0] != EOS
    r = shards_cli("import", *train, "--tokenizer", tokenizer_dir, "--out", tmp_path / "ds", "--eos-first")
    assert r.exit_code == 0, r.output
    assert "does not start with" in r.stderr
    ds = Dataset(tmp_path / "ds")
    first_full = int(np.flatnonzero(head == EOS)[0])
    assert ds.document(0).tolist() == head[:first_full].tolist()  # the tail of a document begun in val
    k = next(i for i, d in enumerate(docs) if [EOS] + d == ds.document(1).tolist())
    assert all(ds.document(1 + j).tolist() == [EOS] + d for j, d in enumerate(docs[k:]))


# -- llm.c's file-size rule: --tokens-per-file ---------------------------------------------

def test_tokens_per_file_cuts_at_document_boundaries(train_valid, tmp_path):
    src = Dataset(train_valid / "train")
    n = 3000
    r = shards_cli("export", src.path, "--format", "llmc", "--out", tmp_path / "b", "--tokens-per-file", n)
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "b").glob("data_*.bin"))
    counts = [_header(f)[2] for f in files]
    assert sum(counts) == src.num_tokens and len(files) > len(src.manifest.shards)
    starts = {src.document_span(d)[0] for d in range(src.num_documents)} | {src.num_tokens}
    at = 0
    for i, c in enumerate(counts):
        last_doc = max(s for s in starts if s < at + c)  # where the file's last document begins
        assert at + c in starts  # the file ends where a document ends
        if i < len(counts) - 1:
            assert c >= n and last_doc - at < n  # ... at the first boundary at or past n tokens
        at += c
    assert f"smallest file {min(counts):,} tokens" in r.output
    back = shards_cli("import", *files, "--tokenizer", src.tokenizer_dir, "--out", tmp_path / "back")
    assert back.exit_code == 0, back.output
    assert Dataset(tmp_path / "back").fingerprint == src.fingerprint


def test_export_help_states_llmc_file_size_rule():
    r = shards_cli("export", "--help")
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "at least processes x B x T + 1 tokens" in text and "--tokens-per-file" in text


def test_export_refuses_to_mix_with_an_earlier_export(train_valid, tmp_path):
    out = tmp_path / "b"
    assert shards_cli("export", train_valid / "train", "--format", "llmc", "--out", out).exit_code == 0
    before = sorted(p.name for p in out.iterdir())
    line = assert_clean_error(shards_cli("export", train_valid / "valid", "--format", "llmc", "--out", out), 2)
    assert "already holds data_000000.bin" in line
    assert sorted(p.name for p in out.iterdir()) == before


def test_a_failure_while_renaming_the_files_leaves_none_and_the_rerun_is_not_refused(make_dataset, tmp_path,
                                                                                     monkeypatch):
    """The renames come last, one file at a time: a failure at the second must take back the first,
    or llm.c would glob a partial set and the rerun would be refused as an earlier export."""
    import errno
    import os

    from shards import interop

    src = make_dataset([[5, 6, 7, 2]] * 30, shard_tokens=20)  # 6 shards: 6 llm.c files
    out = tmp_path / "bins"
    replace, renamed = os.replace, []

    def fails_at_the_second(a, b):
        if str(b).endswith(".bin") and renamed:
            raise OSError(errno.EIO, "Input/output error", str(b))
        replace(a, b)
        renamed.append(b)

    with monkeypatch.context() as m:
        m.setattr(interop.os, "replace", fails_at_the_second)
        line = assert_clean_error(shards_cli("export", src, "--format", "llmc", "--out", out), 1)
    assert "Input/output error" in line and len(renamed) == 1
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []  # no .bin, no temporary file
    again = shards_cli("export", src, "--format", "llmc", "--out", out)
    assert again.exit_code == 0, again.output
    assert len(list(out.glob("data_*.bin"))) == 6
