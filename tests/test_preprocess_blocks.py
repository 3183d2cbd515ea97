"""The one definition of how bytes become lines (preprocess.blocks): read_blocks cuts a stream into
blocks, block_lines splits them back into lines. Checked against the definition itself (a line ends
with \\r\\n, \\r or \\n; a line over the limit is cut by split_long) for every read size, wherever
units begin and end, and the workers' shortcut for clean text against the rules."""

from __future__ import annotations

import io
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from preprocess import blocks, worker
from preprocess.blocks import Block, block_lines, count_lines, first_line_start, read_blocks, split_long
from preprocess.inputs import InputFile, Unit, plan_part

EOL = re.compile(rb"\r\n|\r|\n")
PARTS = [b"a", b"b", b" ", b"\n", b"\r", b"\r\n", "。".encode(), "あ".encode()]


def spec(data: bytes, limit: int | None, start: int = 0, stop: int | None = None) -> list[tuple]:
    """(piece, first, last, end) of the lines starting in [start, stop), straight from the definition."""
    out, pos = [], 0
    ends = [(m.start(), m.end()) for m in EOL.finditer(data)]
    if (ends[-1][1] if ends else 0) < len(data):
        ends.append((len(data), len(data)))  # the last line, without a line end
    for content_end, line_end in ends:
        if start <= pos and (stop is None or pos < stop):
            line = data[pos:content_end]
            parts = split_long(line, limit) if limit is not None and len(line) > limit else [line]
            at = pos
            for j, p in enumerate(parts):
                at += len(p)
                last = j == len(parts) - 1
                out.append((p, j == 0, last, line_end if last else at))
        pos = line_end
    return out


def via_blocks(path, data: bytes, limit: int | None, block_bytes: int, units: list[Unit]):
    """What the main process hands out and a worker splits back, unit by unit."""
    f = InputFile(path, path.name, len(data), "txt" if limit else "jsonl", None)
    out, numbered = [], []
    for i in range(len(units)):
        for b in read_blocks([f], units, i, max_doc_bytes=limit or 1024, block_bytes=block_bytes):
            got = list(block_lines(b, limit))
            if b.whole:
                assert b.lines == count_lines(b.data) == sum(1 for *_, last, _ in got if last)
            out += got
            if b.line is not None:
                numbered.append((b.offset, b.line))
    return out, numbered


def _units(size: int, cuts: list[int]) -> list[Unit]:
    bounds = [0, *sorted(cuts), size]
    return [Unit(0, a, None if b == size else b) for a, b in zip(bounds, bounds[1:]) if a < b or b == size]


@given(body=st.lists(st.sampled_from(PARTS), max_size=300), long=st.integers(0, 3000),
       tail=st.lists(st.sampled_from(PARTS), max_size=40), limit=st.sampled_from([None, 16, 1024, 1500]),
       block_bytes=st.sampled_from([1, 2, 3, 64, 1000, 1 << 20]), data=st.data())
@settings(max_examples=300, deadline=None)
@example(body=[b"a", b"b", b"\r\n", b"c", b"\r\n"], long=0, tail=[], limit=None, block_bytes=3,
         data=None)  # \r | \n across reads
def test_blocks_hold_exactly_the_lines_of_the_file(tmp_path_factory, body, long, tail, limit, block_bytes, data):
    raw = b"".join(body) + b"x" * long + b"".join(tail)
    path = tmp_path_factory.mktemp("b") / "f.txt"
    path.write_bytes(raw)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=3)) if data is not None else []
    units = _units(len(raw), cuts)
    got, numbered = via_blocks(path, raw, limit, block_bytes, units)
    assert got == spec(raw, limit)  # every line once, in order, however the units cut the file
    # Each unit reads the lines that start in its range (what --part relies on).
    for u in units:
        mine, _ = via_blocks(path, raw, limit, block_bytes, [Unit(0, u.start, u.stop)])
        assert mine == spec(raw, limit, u.start, u.stop)
    # Line numbers at block starts agree with counting from the top of the file.
    for offset, line in numbered:
        before = raw[:offset]
        at_line_start = offset == 0 or before[-1:] in (b"\n", b"\r")
        assert line == count_lines(before) + (1 if at_line_start else 0)  # mid-line: the line is counted


@settings(max_examples=100, deadline=None)
@given(body=st.lists(st.sampled_from(PARTS), max_size=60), chunk=st.sampled_from([1, 2, 3, 1 << 20]))
def test_first_line_start_at_every_offset(body, chunk):
    data = b"".join(body)
    starts = [0] + [m.end() for m in EOL.finditer(data)]
    for offset in range(len(data) + 1):
        want = min([s for s in starts if s >= offset] + [len(data)])
        assert first_line_start(io.BytesIO(data), offset, chunk) == want


def test_parts_meet_inside_a_crlf(tmp_path):
    # The two halves of these 11 bytes meet at byte 5: a line start, or between "\r" and "\n".
    for raw in (b"abc\r\nde\r\nfg", b"abcd\r\nef\r\ng"):
        path = tmp_path / "f.txt"
        path.write_bytes(raw)
        f = InputFile(path, path.name, len(raw), "txt", None)
        halves = [via_blocks(path, raw, 1024, 2, plan_part([f], k, 2))[0] for k in (0, 1)]
        assert halves[0] and halves[1]
        assert [p for h in halves for p, *_ in h] == raw.replace(b"\r\n", b"\n").split(b"\n")


def test_long_crlf_line_cut_the_same_for_every_read_size(tmp_path):
    # Regression: a long line's last `limit` bytes followed by a "\r" at the end of a read were
    # cut once more than split_long cuts them, so ids depended on the read size.
    line = b" febcbdgd  gcdde gd ef bdbaaa fg"  # found by search; read size 1 cut it wrongly
    raw = line + b"\r\nend\r\n"
    path = tmp_path / "f.txt"
    path.write_bytes(raw)
    for block_bytes in range(1, 45):
        got, _ = via_blocks(path, raw, 16, block_bytes, [Unit(0, 0, None)])
        assert got == spec(raw, 16), block_bytes


def test_a_long_line_streams_in_pieces_without_its_end_in_memory(tmp_path):
    line = ("これは長い文です。" * 2000).encode()  # 54 kB, no line end for a while
    path = tmp_path / "f.txt"
    path.write_bytes(line + b"\nnext\n")
    f = InputFile(path, path.name, path.stat().st_size, "txt", None)
    blocks = list(read_blocks([f], [Unit(0, 0, None)], 0, max_doc_bytes=4096, block_bytes=1000))
    pieces = [b for b in blocks if not b.whole]
    assert [b.data for b in pieces] == split_long(line, 4096)
    assert all(len(b.data) <= 4096 for b in blocks)  # never the whole line in one piece of memory
    assert all(b.data.endswith("。".encode()) for b in pieces[:-1])
    assert [(b.first, b.last) for b in pieces] == [(True, False)] + [(False, False)] * (len(pieces) - 2) + [(False, True)]
    assert blocks[-1].whole and blocks[-1].data == b"next\n"


def test_a_line_longer_than_a_read_is_searched_once(monkeypatch, tmp_path):
    """The buffer of a line that does not end within a read is searched for line ends only in
    the bytes not searched before: reading a long JSON line (never cut) or a unit that stops
    inside one costs time in proportion to its length, not to its square."""
    searched = []
    last, start = blocks._last_line_end, blocks._line_start_at_or_after

    def counting_last(buf, eof, clean=0):
        searched.append(0 if eof else len(buf) - clean)
        return last(buf, eof, clean)

    def counting_start(buf, p, eof, clean=0):
        searched.append(len(buf) - max(p - 1, clean, 0))
        return start(buf, p, eof, clean)

    monkeypatch.setattr(blocks, "_last_line_end", counting_last)
    monkeypatch.setattr(blocks, "_line_start_at_or_after", counting_start)
    raw = b'{"text": "a"}\r\n{"text": "' + b"x" * 200_000 + b'"}\r\n{"text": "b"}\n'
    path = tmp_path / "f.jsonl"
    path.write_bytes(raw)
    for units in ([Unit(0, 0, None)], [Unit(0, 0, 1000), Unit(0, 1000, None)]):  # the 2nd: a part ends in it
        searched.clear()
        got, _ = via_blocks(path, raw, None, 1000, units)
        assert got == spec(raw, None)
        # A byte is searched a few times at most (for the last line end, the unit's stop, the next
        # unit's first line); searching again from the buffer's start made it 200 reads x 100 kB.
        assert sum(searched) <= 4 * len(raw), sum(searched)


def test_resume_from_a_cursor_reads_the_rest(tmp_path):
    raw = b"one\r\ntwo\rthree\nfour"
    path = tmp_path / "f.txt"
    path.write_bytes(raw)
    f = InputFile(path, path.name, len(raw), "txt", None)
    units = [Unit(0, 0, None)]
    blocks = list(read_blocks([f], units, 0, max_doc_bytes=1024, block_bytes=5))
    for b in blocks:
        rest = list(read_blocks([f], units, 0, max_doc_bytes=1024, block_bytes=5, resume=b.cursor()))
        assert [p for r in rest for p, *_ in block_lines(r, 1024)] == \
               [p for p, *_ in spec(raw, 1024, b.end)]
        assert all(r.line is not None for r in rest)  # line numbers carry over for messages


# -- the workers' shortcut gives what the rules give ------------------------------------------

@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.sampled_from(["a", "b", " ", "\t", "\u3000", "é", "あ", "\n", "\n", "\r", "\r\n", "\0",
                                       "\ufeff"]), max_size=80),
       crlf=st.booleans(), offset=st.sampled_from([0, 7]), limit=st.sampled_from([8, 1024]), bad=st.booleans(),
       fraction=st.sampled_from([0.0, 0.5]))
@example(parts=["a", "\n", " ", "\n", "\n", "b"], crlf=True, offset=7, limit=1024, bad=False, fraction=0.5)
def test_fast_path_agrees_with_the_rules(tmp_path_factory, parts, crlf, offset, limit, bad, fraction):
    text = "".join(parts)
    if crlf:  # only "\r\n" line ends: the shortcut takes these too
        text = text.replace("\r", "").replace("\n", "\r\n")
    data = text.encode() + (b"\xff\r\n" if crlf and bad else b"\xff\n" if bad else b"")
    path = tmp_path_factory.mktemp("f") / "f.txt"
    f = InputFile(path, path.name, offset + len(data), "txt", None)
    s = worker.Settings([f], "text", "replace", limit, None, "<u2", 1000, fraction)
    block = Block(0, 0, data, offset, offset + len(data), None, True, lines=count_lines(data))
    fast = worker._fast(block, s)
    if fast is not None:  # the shortcut declines anything unusual (lone \r, NUL, BOM, bad UTF-8, long lines)
        assert _counted(fast) == _counted(worker._slow(block, s))
    elif not bad and text.count("\r") == text.count("\r\n") and "\0" not in text and \
            not (offset == 0 and text.startswith("\ufeff")):
        assert max(map(len, data.replace(b"\r\n", b"\n").split(b"\n"))) > limit  # declined only for a long line


def _counted(docs):
    *rest, stats = docs
    return (*rest, {k: n for k, n in stats.items() if n})
