"""Input formats through the `preprocess` command: .jsonl, compressed files, directories, huge lines."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zlib
from pathlib import Path
from unittest import mock

import pytest

from preprocess import encoding
from preprocess.blocks import split_long
from shards import Dataset
from tests.conftest import preprocess_args
from tests.helpers import assert_clean_error, documents, preprocess_cli, stream, write_lines


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def expected_stream(lines: list[str], tok) -> list[int]:
    """The stream a run must write: each non-blank line encoded, EOS after it."""
    return [i for line in lines if line.strip() for i in [*tok.encode(line), tok.eos_token_id]]


def _inputs(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())["inputs"]


def test_jsonl_with_text_key_and_bad_lines(tmp_path, corpus_lines, tokenizer_dir, tok):
    lines = corpus_lines[:120]
    rows = [json.dumps({"id": i, "body": t}, ensure_ascii=i % 2 == 0) for i, t in enumerate(lines)]
    rows[10:10] = ['{"id": "broken", "body": "no end', "not json at all"]
    rows[50:50] = ['{"id": 1, "text": "body missing"}', '["a list"]']
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "ds"
    r = preprocess_cli(*preprocess_args(path, tokenizer_dir, out, "--text-key", "body"))
    assert r.exit_code == 0, r.output
    assert stream(out).tolist() == expected_stream(lines, tok)
    (counts,) = _inputs(out)
    assert (counts["documents"], counts["bad_json"], counts["no_text"]) == (120, 2, 2)
    assert "bad_json 2" in r.stdout and "no_text 2" in r.stdout  # in the summary too

    line = assert_clean_error(preprocess_cli(*preprocess_args(path, tokenizer_dir, tmp_path / "s", "--text-key",
                                                               "body", "--errors", "strict", "-q")), 1)
    assert f"{path}:11: not valid JSON" in line
    assert not (tmp_path / "s" / "manifest.json").exists()


@pytest.mark.parametrize("how", ["tokenizer", "vocab-size"])
def test_json_lines_python_cannot_parse_are_counted(tmp_path, corpus_lines, tokenizer_dir, how):
    """An integer of over 4,300 digits (ValueError) and deep nesting (RecursionError) are bad
    JSON like any other: counted in a worker process and in the main process's tokenizer
    sample; one line with --errors strict."""
    lines = corpus_lines[:300]
    rows = [json.dumps({"text": t}) for t in lines]
    rows[5:5] = ['{"text": "x", "n": ' + "7" * 5000 + "}", "[" * 100_000 + "]" * 100_000]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    source = ["--tokenizer", tokenizer_dir, "--workers", 1] if how == "tokenizer" else ["--vocab-size", 1000, "--character-coverage", 0.98, "-w", 0]
    r = preprocess_cli(path, *source, "--out", tmp_path / "ds", "-q")
    assert r.exit_code == 0, r.output
    (counts,) = _inputs(tmp_path / "ds")
    assert (counts["documents"], counts["bad_json"]) == (300, 2)
    line = assert_clean_error(preprocess_cli(path, *source, "--out", tmp_path / "s", "--errors", "strict", "-q"), 1)
    assert line.startswith(f"error: {path}:6: not valid JSON (Exceeds the limit (4300 digits)"), line


@pytest.mark.parametrize("suffix, compress", [(".gz", lambda b: gzip.compress(b, mtime=0)), (".bz2", bz2.compress),
                                              (".xz", lzma.compress)])
def test_compressed_input_gives_the_plain_stream(tmp_path, slice_file, tokenizer_dir, corpus_lines, tok,
                                                 suffix, compress):
    path = tmp_path / f"slice.txt{suffix}"
    path.write_bytes(compress(slice_file.read_bytes()))
    out = tmp_path / "ds"
    r = preprocess_cli(*preprocess_args(path, tokenizer_dir, out, "-q"))
    assert r.exit_code == 0, r.output
    assert stream(out).tolist() == expected_stream(corpus_lines[:300], tok)
    assert _inputs(out)[0]["bytes"] == path.stat().st_size


def test_compressed_jsonl(tmp_path, corpus_lines, tokenizer_dir, tok):
    path = tmp_path / "docs.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps({"text": t}) + "\n" for t in corpus_lines[:50]).encode()))
    out = tmp_path / "ds"
    assert preprocess_cli(*preprocess_args(path, tokenizer_dir, out, "-q")).exit_code == 0
    assert stream(out).tolist() == expected_stream(corpus_lines[:50], tok)


def test_corrupt_compressed_file(tmp_path, slice_file, tokenizer_dir):
    path = tmp_path / "slice.txt.gz"
    path.write_bytes(gzip.compress(slice_file.read_bytes())[:5000])  # cut short
    line = assert_clean_error(preprocess_cli(*preprocess_args(path, tokenizer_dir, tmp_path / "ds", "-q")), 1)
    assert f"{path}: cannot read" in line
    assert not (tmp_path / "ds" / "manifest.json").exists()


def _damaged_gzip(data: bytes) -> bytes:
    """`data` gzipped, with two bytes of its deflate stream flipped so that zlib itself refuses
    it (not only gzip's CRC check): the first such place."""
    good = gzip.compress(data)
    for at in range(10, len(good) - 8):  # past the 10-byte header
        bad = bytearray(good)
        bad[at] ^= 0xFF
        bad[at + 1] ^= 0x55
        try:
            gzip.decompress(bytes(bad))
        except zlib.error:
            return bytes(bad)
        except (OSError, EOFError):
            continue
    raise AssertionError("no damage made zlib fail")


@pytest.mark.parametrize("how", ["tokenizer", "vocab-size"])
def test_damaged_deflate_stream(tmp_path, slice_file, tokenizer_dir, how):
    """gzip raises zlib.error (not an OSError) for a bad deflate stream: one line naming the
    file, exit 1, both when encoding and when reading the tokenizer's training sample."""
    path = tmp_path / "slice.txt.gz"
    path.write_bytes(_damaged_gzip(slice_file.read_bytes()))
    args = preprocess_args(path, tokenizer_dir, tmp_path / "ds", "-q")
    if how == "vocab-size":
        args = [str(path), "--vocab-size", "400", "--out", str(tmp_path / "ds"), "--workers", "0", "-q"]
    line = assert_clean_error(preprocess_cli(*args), 1)
    assert line.startswith(f"error: {path}: cannot read (Error -3 while decompressing data"), line
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_directory_input_is_searched_recursively(tmp_path, corpus_lines, tokenizer_dir, tok):
    root = tmp_path / "corpus"
    write_lines(root / "b" / "deep" / "two.txt", corpus_lines[40:60])
    write_lines(root / "a.txt", corpus_lines[:20])
    (root / "b" / "one.jsonl.gz").write_bytes(
        gzip.compress("".join(json.dumps({"text": t}) + "\n" for t in corpus_lines[20:40]).encode()))
    (root / "b" / "notes.md").write_text("not an input")
    out = tmp_path / "ds"
    r = preprocess_cli(*preprocess_args(root, tokenizer_dir, out))
    assert r.exit_code == 0, r.output
    assert "ignored 1 file(s)" in r.stderr
    # Sorted by path: a.txt, b/deep/two.txt, b/one.jsonl.gz.
    want = expected_stream(corpus_lines[:20] + corpus_lines[40:60] + corpus_lines[20:40], tok)
    assert stream(out).tolist() == want
    assert [i["name"] for i in _inputs(out)] == [f"{root}/a.txt", f"{root}/b/deep/two.txt", f"{root}/b/one.jsonl.gz"]


def test_huge_single_line_is_split_deterministically(tmp_path, corpus_lines, tokenizer_dir, tok):
    line = "".join(corpus_lines)  # ~1.7 MB of Japanese sentences without a line end
    line = line + " " + line  # ~3.5 MB
    path = tmp_path / "huge.txt"
    path.write_text(f"{corpus_lines[0]}\n{line}\n{corpus_lines[1]}\n", encoding="utf-8")
    out = tmp_path / "ds"
    r = preprocess_cli(*preprocess_args(path, tokenizer_dir, out, "--max-doc-bytes", 65536, "--shard-tokens",
                                        100_000))
    assert r.exit_code == 0, r.output
    assert "split documents 1" in r.stdout
    ds = Dataset(out)
    assert ds.num_documents == 3 and ds.manifest.raw["stats"]["split"] == 1 and _inputs(out)[0]["split"] == 1
    pieces = split_long(line.encode(), 65536)
    assert len(pieces) > 50 and all(p.endswith("。".encode()) for p in pieces[:-1])
    ids = list(documents(out)[1])
    assert ids == [i for p in pieces for i in tok.encode(p.decode())]  # where it was cut, each piece encoded
    assert tok.decode(ids) == line


def test_split_does_not_depend_on_read_size(tmp_path, corpus_lines, tokenizer_dir):
    line = "".join(corpus_lines[:400])  # ~150 kB on one line
    path = write_lines(tmp_path / "long.txt", [corpus_lines[0], line, line[:5000]], "\r\n")
    streams = []
    for chunk in (777, 4096, 65537, 1 << 20):  # bytes the main process reads per block
        out = tmp_path / f"c{chunk}"
        with mock.patch.object(encoding, "BATCH_BYTES", chunk):
            r = preprocess_cli(*preprocess_args(path, tokenizer_dir, out, "--max-doc-bytes", 4096, "-q"))
        assert r.exit_code == 0, r.output
        streams.append(stream(out).tolist())
        assert Dataset(out).manifest.raw["stats"]["split"] == 2
    assert all(s == streams[0] for s in streams)


def test_multi_frame_zstd_is_read_to_the_end(tmp_path, corpus_lines, tokenizer_dir):
    """pzstd and concatenated .zst files hold several frames: all of them are read."""
    zstandard = pytest.importorskip("zstandard")
    from shards import Dataset

    from preprocess.cli import main as preprocess_main
    from click.testing import CliRunner

    text = ("\n".join(corpus_lines[:200]) + "\n").encode()
    half = text.index(b"\n", len(text) // 2) + 1
    c = zstandard.ZstdCompressor()
    (tmp_path / "two.txt.zst").write_bytes(c.compress(text[:half]) + c.compress(text[half:]))
    (tmp_path / "plain.txt").write_bytes(text)
    for name in ("two.txt.zst", "plain.txt"):
        r = CliRunner().invoke(preprocess_main, [str(tmp_path / name), "--tokenizer", str(tokenizer_dir), "-w", "0",
                                                 "-q", "--out", str(tmp_path / f"out-{name}")])
        assert r.exit_code == 0, r.output
    a, b = Dataset(tmp_path / "out-two.txt.zst"), Dataset(tmp_path / "out-plain.txt")
    assert a.num_documents == b.num_documents == 200 and a.fingerprint == b.fingerprint


def test_damaged_zstd_stream(tmp_path, slice_file, tokenizer_dir):
    zstandard = pytest.importorskip("zstandard")
    path = tmp_path / "slice.txt.zst"
    bad = bytearray(zstandard.ZstdCompressor().compress(slice_file.read_bytes()))
    bad[20] ^= 0xFF  # inside the first block: "Data corruption detected"
    bad[21] ^= 0x55
    path.write_bytes(bytes(bad))
    line = assert_clean_error(preprocess_cli(*preprocess_args(path, tokenizer_dir, tmp_path / "ds", "-q")), 1)
    assert line.startswith(f"error: {path}: cannot read (zstd decompress error"), line
