"""How bytes become lines: the one definition, used by the main process's cutting and by the workers.

A line ends with `\\n`, `\\r\\n` or `\\r`. The main process reads a (decompressed) stream and
hands the workers blocks of about `block_bytes` that end at a line end, so every line lies
whole in one block (`read_blocks`, the only state machine over a stream); a worker (or
`reader.read_unit`, in this process) splits a block back into its lines with `block_lines`.
A line longer than `max_bytes` is cut by `cut_point` into pieces, the same ones whether it
arrives whole in a block (`split_long`) or is cut while still being read: the ids never
depend on how the file was read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from preprocess.errors import InputError
from preprocess.inputs import InputFile, Unit, unit_bytes
from preprocess.streams import open_binary, read_errors

BLOCK_BYTES = 1 << 20
EOL = re.compile(rb"\r\n|\r|\n")
BOM = b"\xef\xbb\xbf"
# Where a long document may be cut: right after a sentence end, else after a space.
_SENTENCE_ENDS = tuple(s.encode() for s in ("\u3002", "\uff01", "\uff1f", ". ", "! ", "? ", "\n"))

# progress(n, resumed): n more bytes of the unit are done; resumed=True for bytes an earlier
# (interrupted) run did, which count towards the total but not towards this run's rate.
ProgressFn = Callable[[int, bool], None]


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where reading resumes: unit `unit` at `offset`, a line start (decompressed bytes) or, for
    Parquet and Arrow, a row number of the file."""

    unit: int
    offset: int
    line: int | None  # 1-based line number at `offset`; None when the unit began mid-file or for rows

    def to_json(self) -> dict:
        return {"unit": self.unit, "offset": self.offset, "line": self.line}


@dataclass(frozen=True, slots=True)
class Block:
    """Bytes for one worker task.

    `whole`: complete lines (each with its line end, the last maybe without at end of file).
    Otherwise one piece of a too-long line, without its line end; `first`/`last` say whether
    it begins/ends that line. `end` is the offset just past the block (past the line end for a
    last piece): where reading resumes after it.
    """

    unit: int
    file: int
    data: bytes
    offset: int
    end: int
    line: int | None  # line number at `offset`; None when the unit began mid-file
    whole: bool
    first: bool = True
    last: bool = True
    lines: int = 0  # lines the block finishes: count_lines(data) when whole, 1 for a last piece

    def cursor(self) -> Cursor:
        return Cursor(self.unit, self.end, None if self.line is None else self.line + self.lines)


def cut_point(window: bytes) -> int:
    """Where to end a piece of a too-long document, given its next max_doc_bytes bytes.

    Right after the last sentence end in the window's final quarter ("。", "！", "？", ". ",
    "! ", "? ", newline), else after its last space there, else at the last UTF-8 character
    boundary. It depends on the window alone, so the cut is the same however the file was
    read: for b"...です。そして..." it falls right after "。".
    """
    n = len(window)
    floor = n - n // 4
    ends = [i + len(s) for s in _SENTENCE_ENDS if (i := window.rfind(s, floor)) >= 0]
    if ends:
        return max(ends)
    space = window.rfind(b" ", floor)
    if space >= 0:
        return space + 1
    i = n - 1  # back up over continuation bytes (10xxxxxx) to the last character's lead byte
    while i > 0 and n - i < 4 and 0x80 <= window[i] < 0xC0:
        i -= 1
    lead = window[i]
    width = 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    return n if i + width <= n else max(i, 1)


def line_limit(f: InputFile, max_doc_bytes: int) -> int | None:
    """The longest line (bytes) of `f` before it is cut into pieces: a .txt line is a document,
    cut like any; a JSON line is never cut before parsing (its document is cut after)."""
    return max_doc_bytes if f.fmt == "txt" else None


def split_long(data: bytes, max_bytes: int) -> list[bytes]:
    """Cut `data` into pieces of at most max_bytes with `cut_point` (one piece if it fits)."""
    pieces = []
    while len(data) > max_bytes:
        cut = cut_point(data[:max_bytes])
        pieces.append(data[:cut])
        data = data[cut:]
    pieces.append(data)
    return pieces


def count_lines(data: bytes) -> int:
    """Line ends in `data` (\\n, \\r\\n or \\r), plus one for a last line without one."""
    n = data.count(b"\n")
    if b"\r" in data:
        n += data.count(b"\r") - data.count(b"\r\n")
    return n + (1 if data and data[-1:] not in (b"\n", b"\r") else 0)


def block_lines(block: Block, max_bytes: int | None) -> Iterator[tuple[bytes, bool, bool, int]]:
    """(data, first, last, end) for every line of a block, or piece of a line over max_bytes.

    `first`/`last` tell whether a piece begins/ends its line; `end` is the offset just past
    the piece (for a line's last piece: past its line end, the next line's start). A whole
    block holds complete lines, so no state carries over from one block to the next.
    """
    if not block.whole:
        yield block.data, block.first, block.last, block.end
        return
    data, base, pos = block.data, block.offset, 0
    for m in EOL.finditer(data):
        yield from _pieces(data[pos:m.start()], base + pos, base + m.end(), max_bytes)
        pos = m.end()
    if pos < len(data):  # the file's last line, without a line end
        yield from _pieces(data[pos:], base + pos, base + len(data), max_bytes)


def _pieces(line: bytes, start: int, end: int, max_bytes: int | None):
    parts = split_long(line, max_bytes) if max_bytes is not None and len(line) > max_bytes else [line]
    for j, part in enumerate(parts):
        last = j == len(parts) - 1
        start += len(part)
        yield part, j == 0, last, end if last else start


# -- reading a stream ---------------------------------------------------------------------------

def first_line_start(stream: BinaryIO, start: int, chunk: int = BLOCK_BYTES) -> int:
    """The first offset >= start where a line begins: 0, or just past a line end."""
    if start == 0:
        return 0
    stream.seek(start - 1)
    buf, at = bytearray(), start - 1  # buf[0] is the byte at offset `at`
    while True:
        data = stream.read(chunk)
        buf += data
        q = _line_start_at_or_after(buf, 1, not data)
        if q is not None:
            return at + q
        at += len(buf) - 1  # no line end yet: keep the last byte, a "\r" maybe followed by "\n"
        del buf[:-1]


def read_blocks(files: list[InputFile], units: list[Unit], index: int, *, max_doc_bytes: int,
                block_bytes: int = BLOCK_BYTES, resume: Cursor | None = None,
                progress: ProgressFn | None = None) -> Iterator[Block]:
    """The blocks of unit `index`, from its start or from `resume` (a line start)."""
    unit = units[index]
    f = files[unit.file]
    stream, raw = open_binary(f)
    meter = UnitMeter(f, unit, progress)
    try:
        if resume is not None:
            base, line = resume.offset, resume.line
        else:
            base = first_line_start(stream, unit.start, block_bytes)
            line = 1 if base == 0 else None
        stream.seek(base)
        meter.at(raw.tell(), resumed=resume is not None)
        yield from _frame(stream, lambda: meter.at(raw.tell()), index, unit.file, base, line, unit.stop,
                          line_limit(f, max_doc_bytes), block_bytes)
        meter.finish()
    except read_errors(f) as e:
        raise InputError(f"{f.name}: cannot read ({e})") from None
    finally:
        stream.close()
        raw.close()


class UnitMeter:
    """Progress of one unit in bytes on disk, capped at the unit's share of the total (a read
    runs past the unit's end to finish its last line)."""

    def __init__(self, f: InputFile, unit: Unit, progress: ProgressFn | None):
        self.progress = progress
        self.origin = unit.start if f.compression is None else 0
        self.budget, self.done = unit_bytes(f, unit), 0

    def at(self, position: int, resumed: bool = False) -> None:
        """The file is done up to byte `position` (of the raw file)."""
        self._add(min(max(position - self.origin, 0), self.budget) - self.done, resumed)

    def finish(self) -> None:
        self._add(self.budget - self.done, False)

    def _add(self, n: int, resumed: bool) -> None:
        if n > 0 and self.progress is not None:
            self.done += n
            self.progress(n, resumed)


def _frame(stream: BinaryIO, after_read: Callable[[], None], index: int, file: int, base: int, line: int | None,
           stop: int | None, limit: int | None, block_bytes: int) -> Iterator[Block]:
    """Cut the stream, positioned at `base` (a line start), into blocks of whole lines and
    pieces of too-long lines, up to the first line starting at or past `stop`."""
    buf, eof, in_line = bytearray(), False, False  # in_line: buf[0] continues a line begun before
    # buf[:clean] holds no "\r" or "\n": searches start there, so a line longer than a read is
    # searched once in all, not again from its start after every read (quadratic).
    clean = 0
    while True:
        if stop is not None and not in_line and base >= stop:
            return
        if not eof:
            chunk = stream.read(block_bytes)
            eof = not chunk
            buf += chunk
            after_read()
        if in_line:  # the rest of a too-long line
            found = _next_line_end(buf, clean, eof)
            if found is None and not eof:
                # A final "\r" may be half of "\r\n": the line's text is then one byte shorter.
                pending = int(buf[-1:] == b"\r")
                base = yield from _cut(buf, limit, pending, index, file, base, line, first=False)
                clean = len(buf) - pending
                continue
            tail_end, line_end = found or (len(buf), len(buf))  # None: the file ends inside the line
            pieces = split_long(bytes(buf[:tail_end]), limit)
            origin = base
            for j, piece in enumerate(pieces):
                last = j == len(pieces) - 1
                end = origin + line_end if last else base + len(piece)
                yield Block(index, file, piece, base, end, line, False, False, last, int(last))
                base = end
            del buf[:line_end]
            line = None if line is None else line + 1
            in_line, clean = False, 0
            continue
        end = _last_line_end(buf, eof, clean)
        finishing = False
        if stop is not None and base + len(buf) > stop:
            q = _line_start_at_or_after(buf, stop - base, eof, clean)
            if q is not None and q <= end:
                end, finishing = q, True
        if end > 0:
            data = bytes(buf[:end])
            n = count_lines(data)
            yield Block(index, file, data, base, base + end, line, True, lines=n)
            line = None if line is None else line + n
            del buf[:end]
            base += end
        if finishing or (eof and not buf):
            return
        # What is left holds no line end, but maybe a final "\r" that may be half of "\r\n".
        clean = len(buf) - (buf[-1:] == b"\r")
        if limit is not None and len(buf) > limit and clean == len(buf):
            # A line with no end in sight: hand out the pieces it will surely have.
            base = yield from _cut(buf, limit, 0, index, file, base, line, first=True)
            in_line, clean = True, len(buf)


def _cut(buf: bytearray, limit: int, keep: int, index: int, file: int, base: int, line: int | None, *,
         first: bool) -> Generator[Block, None, int]:
    """Pieces (by cut_point) off the front of buf, part of a line without its end, while more
    than limit + keep bytes are left; returns the offset of what is left."""
    while len(buf) - keep > limit:
        cut = cut_point(bytes(buf[:limit]))
        yield Block(index, file, bytes(buf[:cut]), base, base + cut, line, False, first, False)
        del buf[:cut]
        base += cut
        first = False
    return base


def _next_line_end(buf: bytearray, at: int, eof: bool) -> tuple[int, int] | None:
    """(start, end) of the first line end in buf at or after `at`; None when there is none, or
    when only more data can tell: a final "\\r" may be the first half of "\\r\\n"."""
    m = EOL.search(buf, at)
    if m is None or (m.end() == len(buf) and m.group() == b"\r" and not eof):
        return None
    return m.span()


def _last_line_end(buf: bytearray, eof: bool, clean: int = 0) -> int:
    """Index just past the last complete line in buf (0 if none), given that buf[:clean] holds
    no line end. A final "\\r" may be the first half of "\\r\\n" and counts only at end of
    file; at end of file everything is complete."""
    if eof:
        return len(buf)
    i = max(buf.rfind(b"\n", clean), buf.rfind(b"\r", clean))
    if i == len(buf) - 1 and buf[i] == 0x0D:
        i = max(buf.rfind(b"\n", clean, i), buf.rfind(b"\r", clean, i))
    return i + 1


def _line_start_at_or_after(buf: bytearray, p: int, eof: bool, clean: int = 0) -> int | None:
    """The first index >= p where a line starts in buf (buf[0] starts one), or None when only
    more data can tell; buf[:clean] holds no line end."""
    if p <= 0:
        return 0
    found = _next_line_end(buf, max(p - 1, clean), eof)
    if found is None:
        return len(buf) if eof else None
    return found[1]
