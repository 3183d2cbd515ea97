"""Blocks of whole lines (preprocess.blocks): the main process's cut never changes what a worker
reads, however big the blocks and wherever parts begin."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess.blocks import count_lines, read_blocks
from preprocess.inputs import InputFile, plan_part
from preprocess.reader import read_lines

PARTS = [b"a", b"b", b" ", b"\n", b"\r", b"\r\n", "。".encode(), "あ".encode()]


def _via_blocks(path, data, limit, block_bytes, n_parts):
    f = InputFile(path, path.name, len(data), "txt", None)
    out, lines = [], []
    for k in range(n_parts):
        units = plan_part([f], k, n_parts)
        for i in range(len(units)):
            for b in read_blocks([f], units, i, max_doc_bytes=limit, block_bytes=block_bytes):
                if b.whole:
                    got = list(read_lines(io.BytesIO(b.data), b.offset, None, limit))
                    assert b.lines == count_lines(b.data) == sum(1 for *_, last, _ in got if last)
                    out += got
                else:
                    out.append((b.data, b.first, b.last, b.end))
                if b.line is not None:
                    lines.append((b.offset, b.line))
    return out, lines


@given(body=st.lists(st.sampled_from(PARTS), max_size=300), long=st.integers(0, 3000),
       tail=st.lists(st.sampled_from(PARTS), max_size=40), limit=st.sampled_from([16, 1024, 1500]),
       block_bytes=st.sampled_from([1, 3, 64, 1000, 1 << 20]), n_parts=st.integers(1, 3))
@settings(max_examples=300, deadline=None)
def test_blocks_hold_exactly_the_lines_of_the_file(tmp_path_factory, body, long, tail, limit, block_bytes, n_parts):
    data = b"".join(body) + b"x" * long + b"".join(tail)
    path = tmp_path_factory.mktemp("b") / "f.txt"
    path.write_bytes(data)
    want = list(read_lines(io.BytesIO(data), 0, None, limit))
    got, lines = _via_blocks(path, data, limit, block_bytes, n_parts)
    assert got == want
    # Line numbers at block starts agree with counting from the top of the file.
    for offset, line in lines:
        before = data[:offset]
        at_line_start = offset == 0 or before[-1:] in (b"\n", b"\r")
        assert line == count_lines(before) + (1 if at_line_start else 0)  # mid-line: the line is counted


def test_long_crlf_line_cut_the_same_for_every_read_size(tmp_path):
    # Regression: a long line's last `limit` bytes followed by a "\r" at the end of a read were
    # cut once more than split_long cuts them, so ids depended on the read size.
    line = b" febcbdgd  gcdde gd ef bdbaaa fg"  # found by search; read size 1 cut it wrongly
    data = line + b"\r\nend\r\n"
    path = tmp_path / "f.txt"
    path.write_bytes(data)
    want = list(read_lines(io.BytesIO(data), 0, None, 16))
    for block_bytes in range(1, 45):
        got, _ = _via_blocks(path, data, 16, block_bytes, 1)
        assert got == want, block_bytes
