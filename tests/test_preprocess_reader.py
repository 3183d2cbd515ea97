"""Where long documents are cut (cut_point, split_long) and what the rules (preprocess.reader, the
same in workers and in read_unit) make of awkward bytes: BOM, line ends, invalid UTF-8, NUL, blank
lines, JSON. How bytes become lines is tested in test_preprocess_blocks.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess.blocks import cut_point, split_long
from preprocess.errors import InputError
from preprocess.inputs import InputFile, Unit
from preprocess.reader import Piece, Skip, read_unit


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


# -- read_unit: what each awkward input becomes -----------------------------------------------------

def _items(tmp_path: Path, raw: bytes, *, fmt: str = "txt", errors: str = "replace",
           max_doc_bytes: int = 1 << 20, units: list[Unit] | None = None) -> list[Piece | Skip]:
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(raw)
    f = InputFile(path=path, name=path.name, size=len(raw), fmt=fmt, compression=None)
    units = units or [Unit(0, 0, None)]
    return [item for i in range(len(units))
            for item in read_unit([f], units, i, text_key="text", errors=errors, max_doc_bytes=max_doc_bytes)]


def test_bom_is_dropped_only_at_the_start(tmp_path):
    raw = b"\xef\xbb\xbfone\n\xef\xbb\xbftwo\n"
    assert [i.text for i in _items(tmp_path, raw)] == ["one", "\ufefftwo"]
    # Also when a unit starts right after the first line (a part border): its BOM is not at byte 0.
    assert [i.text for i in _items(tmp_path, raw, units=[Unit(0, 0, 7), Unit(0, 7, None)])] == ["one", "\ufefftwo"]
    raw = b'\xef\xbb\xbf{"text": "a"}\n\xef\xbb\xbf{"text": "b"}\n'
    items = _items(tmp_path, raw, fmt="jsonl")
    assert [i.text if isinstance(i, Piece) else i.reason for i in items] == ["a", "bad_json"]


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


HUGE_INT = b'{"text": "a", "n": ' + b"7" * 5000 + b"}"  # json.loads: ValueError past 4,300 digits
DEEP = b"[" * 100_000 + b"]" * 100_000  # json.loads: RecursionError


def test_json_that_python_refuses_to_parse_is_bad_json(tmp_path):
    raw = b'{"text": "a"}\n' + HUGE_INT + b'\n' + DEEP + b'\n{"text": "b"}\n'
    items = _items(tmp_path, raw, fmt="jsonl")
    assert [(i.reason if isinstance(i, Skip) else i.text) for i in items] == ["a", "bad_json", "bad_json", "b"]
    with pytest.raises(InputError, match=r"in\.jsonl:2: not valid JSON \(Exceeds the limit \(4300 digits\) for "
                                         r"integer string conversion: value has 5000 digits\); fix the line"):
        _items(tmp_path, raw, fmt="jsonl", errors="strict")
    with pytest.raises(InputError, match=r"in\.jsonl:1: not valid JSON \(nested too deeply to parse\)"):
        _items(tmp_path, DEEP + b"\n", fmt="jsonl", errors="strict")


def test_long_jsonl_document_is_split(tmp_path):
    text = "長い文です。" * 1000  # 18 kB
    items = _items(tmp_path, ('{"text": "%s"}\n' % text).encode(), fmt="jsonl", max_doc_bytes=4096)
    assert len(items) == 5 and [i.ends_doc for i in items] == [False] * 4 + [True]
    assert "".join(i.text for i in items) == text
    assert [i.text.encode() for i in items] == split_long(text.encode(), 4096)


# -- Parquet/Arrow values: the rules of a JSON field, less what decoded bytes cannot hold --------

@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.lists(st.sampled_from([b"a", b" ", b"\t", b"\0", b"\xff", b"\xed\xa0\x80", "é".encode(),
                                                 "\ufffd".encode(), "。".encode(), b"\xe3\x81"]),
                                max_size=30).map(b"".join), max_size=8),
       limit=st.sampled_from([8, 1024]))
def test_row_values_follow_the_rules_of_a_json_field(values, limit):
    """A row's value is decoded, then skips the NUL and surrogate checks and the re-encoding a
    JSON field needs (decoding removed the NULs; UTF-8 decodes to no surrogate): the same items."""
    import numpy as np

    from preprocess.blocks import Cursor
    from preprocess.columnar import Rows
    from preprocess.reader import _row_items, decode, value_items

    f = InputFile(path=Path("t.parquet"), name="t.parquet", size=1, fmt="parquet", compression=None)
    offsets = np.cumsum([0, *map(len, values)]).astype(np.int64)
    got = list(_row_items(Rows(0, 0, 5, b"".join(values), offsets, None), f, "replace", "text", limit))
    want = []
    for k, raw in enumerate(values):
        text, replaced, nul = decode(raw, "replace", "", str)
        want += value_items(text, 0, "", "replace", "text", limit, Cursor(0, 5 + k + 1, None), replaced, nul)
    assert got == want
