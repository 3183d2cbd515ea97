"""Each bad input through the `preprocess` command: a clear outcome, counted or refused, never a
traceback, and never a directory that looks like a complete dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shards import Dataset
from tests.conftest import preprocess_args
from tests.helpers import assert_clean_error, documents, preprocess_cli, stream, write_lines


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def _inputs(out: Path) -> dict[str, dict]:
    return {Path(i["name"]).name: i for i in json.loads((out / "manifest.json").read_text())["inputs"]}


def _no_dataset(out: Path) -> None:
    assert not list(out.rglob("manifest.json")) if out.exists() else True


def _ok(*args):
    r = preprocess_cli(*args)
    assert r.exit_code == 0, r.output
    return r


def test_bom_is_stripped(tmp_path, corpus_lines, tokenizer_dir, tok):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(corpus_lines[:3]).encode() + b"\n")
    _ok(*preprocess_args(path, tokenizer_dir, tmp_path / "ds", "-q"))
    assert documents(tmp_path / "ds") == [tuple(tok.encode(t)) for t in corpus_lines[:3]]


def test_crlf_and_cr_line_ends(tmp_path, corpus_lines, tokenizer_dir):
    lines = corpus_lines[:40]
    got = []
    for name, eol in (("lf", "\n"), ("crlf", "\r\n"), ("cr", "\r")):
        path = write_lines(tmp_path / f"{name}.txt", lines, eol)
        _ok(*preprocess_args(path, tokenizer_dir, tmp_path / name, "-q"))
        got.append(stream(tmp_path / name).tolist())
        assert Dataset(tmp_path / name).num_documents == 40
    assert got[0] == got[1] == got[2]


def test_invalid_bytes_are_replaced_and_counted_per_file(tmp_path, tokenizer_dir, tok):
    write_lines(tmp_path / "in" / "good.txt", ["きれいな行です。"])
    (tmp_path / "in" / "bad.txt").write_bytes(b"ok line\nbroken \xff\xfe here\nand \xe3\x81 again\n")
    out = tmp_path / "ds"
    r = _ok(*preprocess_args(tmp_path / "in", tokenizer_dir, out))
    counts = _inputs(out)
    assert counts["bad.txt"]["replaced"] == 3 and counts["good.txt"]["replaced"] == 0
    assert Dataset(out).manifest.raw["stats"]["replaced"] == 3
    assert "replaced characters 3" in r.stdout
    texts = [tok.decode(list(d)) for d in documents(out)]
    assert texts == ["ok line", "broken \ufffd\ufffd here", "and \ufffd again", "きれいな行です。"]  # bad.txt first

    line = assert_clean_error(preprocess_cli(*preprocess_args(tmp_path / "in", tokenizer_dir, tmp_path / "s",
                                                               "--errors", "strict", "-q")), 1)
    assert f"{tmp_path / 'in'}/bad.txt:2: invalid UTF-8" in line and "--errors replace" in line
    _no_dataset(tmp_path / "s")


def test_nul_bytes_are_removed_and_counted(tmp_path, tokenizer_dir, tok):
    path = tmp_path / "nul.txt"
    path.write_bytes("前\x00半と\x00\x00後半\n\x00\x00\n普通\n".encode())
    out = tmp_path / "ds"
    _ok(*preprocess_args(path, tokenizer_dir, out, "-q"))
    assert [tok.decode(list(d)) for d in documents(out)] == ["前半と後半", "普通"]
    c = _inputs(out)["nul.txt"]
    assert (c["nul_bytes"], c["empty"], c["documents"]) == (5, 1, 2)


def test_blank_lines_are_skipped_and_counted(tmp_path, corpus_lines, tokenizer_dir, tok):
    path = tmp_path / "blank.txt"
    path.write_text(f"\n{corpus_lines[0]}\n   \n\t\n\n\u3000\n{corpus_lines[1]}\n\n", encoding="utf-8")
    out = tmp_path / "ds"
    r = _ok(*preprocess_args(path, tokenizer_dir, out))
    assert documents(out) == [tuple(tok.encode(t)) for t in corpus_lines[:2]]
    c = _inputs(out)["blank.txt"]
    assert (c["empty"], c["whitespace"], c["documents"]) == (3, 3, 2)
    assert "skipped: empty 3, whitespace 3" in r.stdout


def test_missing_input(tmp_path, slice_file, tokenizer_dir):
    out = tmp_path / "ds"
    line = assert_clean_error(preprocess_cli(slice_file, tmp_path / "nope.txt", "--tokenizer", tokenizer_dir,
                                             "--out", out, "-q"), 1)
    assert line == f"error: {tmp_path / 'nope.txt'}: no such file or directory"
    assert not out.exists()


def test_no_input_files_found(tmp_path, tokenizer_dir):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "table.csv").write_text("a,b\n")
    out = tmp_path / "ds"
    line = assert_clean_error(preprocess_cli(tmp_path / "in", "--tokenizer", tokenizer_dir, "--out", out, "-q"), 1)
    assert "no input files found" in line
    assert not out.exists()


def test_unknown_input_format(tmp_path, tokenizer_dir):
    (tmp_path / "table.csv").write_text("a,b\n")
    line = assert_clean_error(preprocess_cli(tmp_path / "table.csv", "--tokenizer", tokenizer_dir,
                                             "--out", tmp_path / "ds", "-q"), 2)
    assert "unknown input format" in line


def test_unwritable_output_directory(tmp_path, slice_file, tokenizer_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    line = assert_clean_error(preprocess_cli(*preprocess_args(slice_file, tokenizer_dir, blocker / "sub", "-q")))
    assert f"--out {blocker / 'sub'}: cannot create the output directory" in line
    line = assert_clean_error(preprocess_cli(*preprocess_args(slice_file, tokenizer_dir, blocker, "-q")))
    assert "exists and is not a directory" in line
    assert blocker.read_text() == "in the way"


@pytest.mark.parametrize("content", [b"\n\n\n", b"  \n\t\r\n\r\n", b""])
def test_corpus_without_tokens(tmp_path, tokenizer_dir, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    out = tmp_path / "ds"
    line = assert_clean_error(preprocess_cli(*preprocess_args(path, tokenizer_dir, out, "-q")), 1)
    assert "no tokens" in line
    _no_dataset(out)


def test_corpus_without_tokens_cannot_train_a_tokenizer(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"\n \n")
    out = tmp_path / "ds"
    assert_clean_error(preprocess_cli(path, "--vocab-size", 500, "--out", out, "-q"))
    _no_dataset(out)


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "no" / "such" / "tokenizer", "no such file or directory"),
    (lambda d: d / "missing.model", "no such file or directory"),
    (lambda d: _dir(d / "empty-dir"), "transformers cannot load it"),
    (lambda d: _file(d / "x.json", b"{}"), "a file must be a SentencePiece .model"),
    (lambda d: _file(d / "bad.model", b"\x00garbage\xff" * 10), "not a SentencePiece model"),
    (lambda d: "no-such-tokenizer-name", "not in the local Hugging Face cache"),
])
def test_unknown_tokenizer(tmp_path, slice_file, tokenizer_dir, make, message):
    tokenizer = make(tmp_path)
    out = tmp_path / "ds"
    line = assert_clean_error(preprocess_cli(slice_file, "--tokenizer", tokenizer, "--out", out, "-q"), 2)
    assert message in line and str(tokenizer) in line
    _no_dataset(out)
    # The mistake fixed, the same --out just works: a failed start leaves nothing in the way.
    _ok(*preprocess_args(slice_file, tokenizer_dir, out, "-q"))


@pytest.mark.parametrize("args, message", [
    (["--vocab-size", "1000", "--tokenizer", "x"], "give exactly one of --tokenizer TOK or --vocab-size N"),
    ([], "give exactly one of --tokenizer TOK or --vocab-size N"),
    (["--vocab-size", "100"], "--vocab-size 100: at least 300"),
    (["--vocab-size", "1000", "--part", "0/2"], "--part with --vocab-size"),
])
def test_bad_settings(tmp_path, slice_file, args, message):
    out = tmp_path / "ds"
    line = assert_clean_error(preprocess_cli(slice_file, "--out", out, *args), 2)
    assert message in line
    assert not out.exists()


def test_valid_fraction_that_selects_nothing(tmp_path, tokenizer_dir, corpus_lines):
    path = write_lines(tmp_path / "tiny.txt", corpus_lines[:3])
    out = tmp_path / "ds"
    line = assert_clean_error(preprocess_cli(*preprocess_args(path, tokenizer_dir, out, "--valid-fraction", 0.001,
                                                               "-q")), 1)
    assert "--valid-fraction 0.001 put no document into" in line
    _no_dataset(out)  # DIR/train must not look complete either
