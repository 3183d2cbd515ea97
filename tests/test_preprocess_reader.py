"""The reader's pure functions (cut_point, split_long, first_line_start, read_lines) and what
read_unit makes of awkward bytes: BOM, line ends, invalid UTF-8, NUL, blank lines."""

from __future__ import annotations

import io
import re
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from preprocess import reader
from preprocess.errors import InputError
from preprocess.inputs import InputFile, Unit
from preprocess.reader import Piece, Skip, cut_point, first_line_start, read_lines, read_unit, split_long

EOL = re.compile(rb"\r\n|\r|\n")


# -- cut_point / split_long ----------------------------------------------------------------------

def test_cut_point_after_a_sentence_end():
    window = ("あ" * 30 + "です。" + "そして" * 2).encode()
    cut = cut_point(window)
    assert window[:cut].decode().endswith("です。")
    assert window[cut:].decode() == "そして" * 2


def test_cut_point_prefers_the_last_sentence_end_of_the_final_quarter():
    window = b"x" * 80 + b"One. Two! Three? four five"
    assert window[:cut_point(window)].endswith(b"Three? ")


def test_cut_point_after_a_space_when_no_sentence_ends():
    window = b"a" * 90 + b" " + b"b" * 9
    assert cut_point(window) == 91


def test_cut_point_ignores_ends_before_the_final_quarter():
    window = "。".encode() + b" " + b"x" * 98
    assert cut_point(window) == len(window)  # plain ASCII: every byte is a character boundary


@pytest.mark.parametrize("char", ["あ", "é", "😀"])
def test_cut_point_never_splits_a_character(char):
    data = (char * 100).encode()
    for n in range(8, 40):
        window = data[:n]
        cut = cut_point(window)
        assert 0 < cut <= n
        window[:cut].decode("utf-8")  # a whole number of characters
        assert n - cut < len(char.encode())


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.sampled_from("aé あ。.!? 😀\n")), max_bytes=st.integers(4, 64))
def test_split_long_pieces(text, max_bytes):
    data = text.encode()
    pieces = split_long(data, max_bytes)
    assert b"".join(pieces) == data
    assert all(0 < len(p) <= max_bytes for p in pieces) or pieces == [b""]
    for p in pieces:
        p.decode("utf-8")
    assert split_long(data, max_bytes) == pieces  # it depends on the bytes alone
    if len(data) <= max_bytes:
        assert pieces == [data]


# -- first_line_start / read_lines ---------------------------------------------------------------

def _lines(data: bytes) -> list[tuple[int, bytes]]:
    """(start offset, content) of every line, by the definition: ends are \\r\\n, \\r or \\n."""
    out, start = [], 0
    for m in EOL.finditer(data):
        out.append((start, data[start:m.start()]))
        start = m.end()
    if start < len(data):
        out.append((start, data[start:]))
    return out


def _read(data: bytes, offset: int, stop: int | None, max_bytes: int | None) -> list[tuple[int, bytes]]:
    """Lines as read_lines hands them out, pieces joined back, with their start offsets; checks
    the pieces on the way."""
    stream = io.BytesIO(data)
    stream.seek(offset)
    lines, current, start, pos = [], [], offset, offset
    for piece, first, last, end in read_lines(stream, offset, stop, max_bytes):
        assert first == (not current)
        if first:
            start = pos
        current.append(piece)
        if last:
            line = b"".join(current)
            assert current == (split_long(line, max_bytes) if max_bytes and len(line) > max_bytes else [line])
            assert data[start:start + len(line)] == line
            m = EOL.match(data, start + len(line))
            assert end == (m.end() if m else len(data))  # just past the line end: the next line's start
            lines.append((start, line))
            current = []
        else:
            assert end == pos + len(piece)
        pos = end
    assert not current
    return lines


lines_st = st.lists(st.tuples(st.text(st.sampled_from("ab é。 \x00"), max_size=12),
                              st.sampled_from(["\n", "\r\n", "\r"])), max_size=12)


def _bytes(lines: list[tuple[str, str]], tail: str) -> bytes:
    return ("".join(t + e for t, e in lines) + tail).encode()


@settings(max_examples=150, deadline=None)
@given(lines=lines_st, tail=st.sampled_from(["", "last", "\r"]), chunk=st.sampled_from([1, 2, 3, 5, 8, 1 << 20]),
       max_bytes=st.sampled_from([None, 4, 7]))
@example(lines=[("ab", "\r\n"), ("c", "\r\n")], tail="", chunk=3, max_bytes=None)  # \r | \n across reads
def test_read_lines_finds_every_line(lines, tail, chunk, max_bytes):
    data = _bytes(lines, tail)
    with mock.patch.object(reader, "_CHUNK", chunk):
        assert _read(data, 0, None, max_bytes) == _lines(data)


@settings(max_examples=100, deadline=None)
@given(lines=lines_st, tail=st.sampled_from(["", "x"]), chunk=st.sampled_from([1, 2, 3, 1 << 20]))
def test_first_line_start_at_every_offset(lines, tail, chunk):
    data = _bytes(lines, tail)
    starts = [s for s, _ in _lines(data)]
    with mock.patch.object(reader, "_CHUNK", chunk):
        for offset in range(len(data) + 1):
            want = min([s for s in starts if s >= offset] + [len(data)])
            assert first_line_start(io.BytesIO(data), offset) == want


@settings(max_examples=100, deadline=None)
@given(lines=lines_st, chunk=st.sampled_from([1, 2, 1 << 20]), max_bytes=st.sampled_from([None, 5]), data=st.data())
def test_ranges_take_the_lines_starting_in_them(lines, chunk, max_bytes, data):
    """Cut the bytes anywhere into ranges: each range reads the lines that start in it, so together
    they read every line exactly once (what --part relies on)."""
    raw = _bytes(lines, "")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    bounds = [0, *cuts, None]
    got = []
    with mock.patch.object(reader, "_CHUNK", chunk):
        for a, b in zip(bounds, bounds[1:]):
            start = first_line_start(io.BytesIO(raw), a)
            part = _read(raw, start, b, max_bytes)
            assert all(a <= s and (b is None or s < b) for s, _ in part)
            got += part
    assert got == _lines(raw)


def test_a_long_line_streams_in_pieces_without_its_end_in_memory():
    line = ("これは長い文です。" * 2000).encode()  # 54 kB, no line end for a while
    with mock.patch.object(reader, "_CHUNK", 1000):
        out = list(read_lines(io.BytesIO(line + b"\nnext\n"), 0, None, 4096))
    pieces = [p for p, *_ in out[:-1]]
    assert pieces == split_long(line, 4096)
    assert all(p.endswith("。".encode()) for p in pieces[:-1])
    assert out[-1][:3] == (b"next", True, True)


# -- read_unit: what each awkward input becomes -----------------------------------------------------

def _items(tmp_path: Path, raw: bytes, *, fmt: str = "txt", errors: str = "replace",
           max_doc_bytes: int = 1 << 20) -> list[Piece | Skip]:
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(raw)
    f = InputFile(path=path, name=path.name, size=len(raw), fmt=fmt, compression=None)
    return list(read_unit([f], [Unit(0, 0, None)], 0, text_key="text", errors=errors, max_doc_bytes=max_doc_bytes))


def test_bom_is_dropped_only_at_the_start(tmp_path):
    items = _items(tmp_path, b"\xef\xbb\xbfone\n\xef\xbb\xbftwo\n")
    assert [i.text for i in items] == ["one", "\ufefftwo"]


def test_line_ends(tmp_path):
    items = _items(tmp_path, b"a\r\nb\rc\nd")
    assert [i.text for i in items] == ["a", "b", "c", "d"]
    assert [i.cursor.line for i in items] == [2, 3, 4, 5]


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    items = _items(tmp_path, b"ok\nbad \xff here \xc3\x28 and \xe3\x81\n\xef\xbf\xbd is fine\n")
    assert [i.text for i in items] == ["ok", "bad \ufffd here \ufffd( and \ufffd", "\ufffd is fine"]
    assert [i.replaced for i in items] == [0, 3, 0]  # a U+FFFD already in the text is not a replacement


def test_invalid_utf8_strict_names_file_and_line(tmp_path):
    with pytest.raises(InputError, match=r"in\.txt:3: invalid UTF-8 \(byte 6 of"):
        _items(tmp_path, b"ok\nok\n\xff\n", errors="strict")


def test_nul_bytes_are_removed_and_counted(tmp_path):
    items = _items(tmp_path, b"a\x00b\x00\x00c\n\x00\n")
    assert [(type(i).__name__, i.nul) for i in items] == [("Piece", 3), ("Skip", 1)]
    assert items[0].text == "abc" and items[1].reason == "empty"


def test_blank_lines_are_skipped_and_counted(tmp_path):
    items = _items(tmp_path, "\n \t\n\u3000\nx\n\r\n".encode())
    assert [(i.reason if isinstance(i, Skip) else i.text) for i in items] == ["empty", "whitespace", "whitespace",
                                                                             "x", "empty"]


def test_jsonl_lines(tmp_path):
    raw = (b'{"text": "a"}\n{"text": 3}\n[1]\nnot json\n{"other": "b"}\n\n{"text": "  "}\n'
           b'{"text": "x\\u0000y\\ud800"}\n')
    items = _items(tmp_path, raw, fmt="jsonl")
    assert [(i.reason if isinstance(i, Skip) else i.text) for i in items] == [
        "a", "no_text", "no_text", "bad_json", "no_text", "empty", "whitespace", "xy\ufffd"]
    assert (items[-1].nul, items[-1].replaced) == (1, 1)
    with pytest.raises(InputError, match=r"in\.jsonl:2: no string field 'text'"):
        _items(tmp_path, raw, fmt="jsonl", errors="strict")
    with pytest.raises(InputError, match=r"in\.jsonl:2: not valid JSON"):
        _items(tmp_path, b'{"text": "a"}\n{"text": \n', fmt="jsonl", errors="strict")


def test_long_jsonl_document_is_split(tmp_path):
    text = "長い文です。" * 1000  # 18 kB
    items = _items(tmp_path, ('{"text": "%s"}\n' % text).encode(), fmt="jsonl", max_doc_bytes=4096)
    assert len(items) == 5 and [i.ends_doc for i in items] == [False] * 4 + [True]
    assert "".join(i.text for i in items) == text
    assert [i.text.encode() for i in items] == split_long(text.encode(), 4096)
