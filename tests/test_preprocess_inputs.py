"""Finding inputs (formats, directories) and --part K/N: every document in exactly one part."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess.errors import InputError, UsageError
from preprocess.inputs import classify, discover, parse_part, plan_part
from preprocess.reader import Piece, read_unit
from tests.conftest import preprocess_args
from tests.helpers import documents, preprocess_cli, write_lines


@pytest.mark.parametrize("name, kind", [
    ("a.txt", ("txt", None)), ("a.TXT", ("txt", None)), ("a.jsonl", ("jsonl", None)),
    ("a.txt.gz", ("txt", "gzip")), ("a.jsonl.bz2", ("jsonl", "bz2")), ("a.b.txt.xz", ("txt", "xz")),
    ("a.jsonl.zst", ("jsonl", "zstd")), ("a.json", None), ("a.gz", None), ("README", None), ("a.csv.gz", None),
])
def test_classify(name, kind):
    assert classify(Path(name)) == kind


def test_discover_searches_directories_recursively_in_a_stable_order(tmp_path):
    root = tmp_path / "corpus"
    for rel in ("b/z.txt", "a/y/x.jsonl", "a/w.txt.gz", "notes.md", "a/y/data.csv"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x\n")
    files, ignored = discover([str(root), str(root / "b" / "z.txt")])  # z.txt named twice: read once
    assert [f.name for f in files] == [f"{root}/a/w.txt.gz", f"{root}/a/y/x.jsonl", f"{root}/b/z.txt"]
    assert [f.fmt for f in files] == ["txt", "jsonl", "txt"]
    assert files[0].compression == "gzip"
    assert ignored == 2


def test_discover_refusals(tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        discover([str(tmp_path / "missing.txt")])
    (tmp_path / "only.csv").write_text("x")
    with pytest.raises(InputError, match="no input files found"):
        discover([str(tmp_path)])
    with pytest.raises(UsageError, match="unknown input format"):
        discover([str(tmp_path / "only.csv")])


@pytest.mark.parametrize("text, want", [(None, (0, 1)), ("0/1", (0, 1)), ("2/3", (2, 3))])
def test_parse_part(text, want):
    assert parse_part(text) == want


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1/0", "1", "a/b", "1/2/3"])
def test_parse_part_refuses(text):
    with pytest.raises(UsageError):
        parse_part(text)


def _all_pieces(files, units) -> list[tuple[int, str]]:
    out = []
    for i in range(len(units)):
        for item in read_unit(files, units, i, text_key="text", errors="replace", max_doc_bytes=1024):
            if isinstance(item, Piece):
                out.append((item.file, item.text))
    return out


file_st = st.tuples(
    st.lists(st.tuples(st.text(st.sampled_from("ab。 "), max_size=8), st.sampled_from(["\n", "\r\n", "\r"])),
             max_size=8),
    st.sampled_from(["plain", "gzip", "parquet"]),  # gzip goes whole to one part; Parquet splits by rows
    st.booleans(),  # starts with a BOM (text files)
    st.integers(1, 4))  # Parquet rows per row group


@settings(max_examples=80, deadline=None)
@given(specs=st.lists(file_st, min_size=1, max_size=3))
def test_parts_cover_every_document_exactly_once(specs):
    from tests.columnar_files import write_parquet

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for j, (lines, kind, bom, group) in enumerate(specs):
            raw = ("\ufeff" if bom else "").encode() + "".join(t + e for t, e in lines).encode()
            path = Path(tmp) / {"plain": f"f{j}.txt", "gzip": f"f{j}.txt.gz", "parquet": f"f{j}.parquet"}[kind]
            if kind == "parquet":
                write_parquet(path, [t for t, _ in lines], row_group_size=group)
            else:
                path.write_bytes(gzip.compress(raw, mtime=0) if kind == "gzip" else raw)
            paths.append(str(path))
        files, _ = discover(paths)
        whole = _all_pieces(files, plan_part(files, 0, 1))
        assert [t for t in whole] == [(j, t) for j, (lines, *_) in enumerate(specs) for t, _ in lines if t.strip()]
        for n in (2, 3, 5):
            parts = [plan_part(files, k, n) for k in range(n)]
            # Each compressed file goes whole to exactly one part.
            compressed = sorted(u.file for p in parts for u in p if files[u.file].compression)
            assert compressed == [i for i, f in enumerate(files) if f.compression]
            assert [x for units in parts for x in _all_pieces(files, units)] == whole


def test_part_border_inside_a_crlf(tmp_path):
    path = tmp_path / "f.txt"
    # 11 bytes each: the two parts meet at byte 5, a line start / between the \r and \n of a line end.
    for data in (b"abc\r\nde\r\nfg", b"abcd\r\nef\r\ng"):
        path.write_bytes(data)
        files, _ = discover([str(path)])
        halves = [_all_pieces(files, plan_part(files, k, 2)) for k in (0, 1)]
        assert [t for h in halves for _, t in h] == data.decode().replace("\r\n", "\n").split("\n")
        assert all(halves)


def test_part_runs_join_to_the_whole(tmp_path, corpus_lines, tokenizer_dir):
    """`preprocess --part K/3` on two CRLF files: the parts' documents, in order, are the whole run's."""
    a = write_lines(tmp_path / "in" / "a.txt", corpus_lines[:150], "\r\n")
    write_lines(tmp_path / "in" / "b.txt", corpus_lines[150:260], "\r\n")
    whole = tmp_path / "whole"
    assert preprocess_cli(*preprocess_args(a.parent, tokenizer_dir, whole, "-q")).exit_code == 0
    joined = []
    for k in range(3):
        out = tmp_path / f"part{k}"
        r = preprocess_cli(*preprocess_args(a.parent, tokenizer_dir, out, "--part", f"{k}/3", "-q"))
        assert r.exit_code == 0, r.output
        joined += documents(out)
    assert joined == documents(whole)
    assert len(joined) == 260
