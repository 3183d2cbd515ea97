"""Cutting a unit of input into blocks of whole lines: the main process's only per-byte work.

The main process reads the (decompressed) bytes and hands the workers blocks of about
`block_bytes` that end at a line end, so every line lies whole in one block and all per-line
work (decoding, JSON, cleaning, tokenizing) happens in the workers. Finding line ends is done
by bytes methods in C. A `.txt` line longer than `max_doc_bytes` is handed out as blocks of
one piece each, cut exactly where `reader.split_long` would cut it, so memory stays bounded
and the ids do not depend on how the file was read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from preprocess.errors import InputError
from preprocess.inputs import InputFile, Unit
from preprocess.reader import EOL, Cursor, cut_point, first_line_start, open_binary, split_long

BLOCK_BYTES = 1 << 20


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


def in_valid(digest: bytes, fraction: float) -> bool:
    """A document goes to the validation set when the hash of its text falls below `fraction`."""
    return int.from_bytes(digest[:8], "big") < fraction * 2.0**64


def goes_to_valid(text: Iterable[bytes], fraction: float) -> bool:
    """The side of a document given its cleaned UTF-8 text, whole or in pieces (one rule for the
    fast path, the line-by-line path and documents joined from piece blocks)."""
    if not fraction:
        return False
    h = hashlib.blake2b(digest_size=8)
    for part in text:
        h.update(part)
    return in_valid(h.digest(), fraction)


def count_lines(data: bytes) -> int:
    """Line ends in `data` (\\n, \\r\\n or \\r), plus one for a last line without one."""
    n = data.count(b"\n")
    if b"\r" in data:
        n += data.count(b"\r") - data.count(b"\r\n")
    return n + (1 if data and data[-1:] not in (b"\n", b"\r") else 0)


def _last_line_end(buf: bytearray, eof: bool) -> int:
    """Index just past the last complete line in buf (0 if none). A final "\\r" may be the first
    half of "\\r\\n" and counts only at end of file; at end of file everything is complete."""
    if eof:
        return len(buf)
    i = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
    if i == len(buf) - 1 and buf[i] == 0x0D:
        i = max(buf.rfind(b"\n", 0, i), buf.rfind(b"\r", 0, i))
    return i + 1


def _line_start_at_or_after(buf: bytearray, p: int, eof: bool) -> int | None:
    """The first index >= p where a line starts in buf (buf[0] starts one), or None when only
    more data can tell."""
    if p <= 0:
        return 0
    m = EOL.search(buf, max(p - 1, 0))
    if m is None or (m.group() == b"\r" and m.end() == len(buf) and not eof):
        return len(buf) if eof else None
    return m.end()


def read_blocks(files: list[InputFile], units: list[Unit], index: int, *, max_doc_bytes: int,
                block_bytes: int = BLOCK_BYTES, resume: Cursor | None = None,
                progress: Callable[[int], None] | None = None) -> Iterator[Block]:
    """The blocks of unit `index`, from its start or from `resume` (a line start)."""
    unit = units[index]
    f = files[unit.file]
    limit = max_doc_bytes if f.fmt == "txt" else None  # a JSON line cannot be cut
    stream, raw = open_binary(f)
    seen = 0
    try:
        if resume is not None:
            base, line = resume.offset, resume.line
        else:
            base = first_line_start(stream, unit.start)
            line = 1 if base == 0 else None
        stream.seek(base)
        buf, eof, in_line = bytearray(), False, False  # in_line: buf[0] continues a line begun before
        while True:
            if unit.stop is not None and not in_line and base >= unit.stop:
                return
            if not eof:
                chunk = stream.read(block_bytes)
                eof = not chunk
                buf += chunk
                if progress is not None:
                    now = raw.tell()
                    progress(now - seen)
                    seen = now
            if in_line:  # the rest of a too-long line
                m = EOL.search(buf)
                # A final "\r" may be half of "\r\n": the line's text is then one byte shorter.
                pending_cr = m is not None and m.group() == b"\r" and m.end() == len(buf) and not eof
                if m is None or pending_cr:
                    if not eof:
                        while len(buf) - pending_cr > limit:
                            cut = cut_point(bytes(buf[:limit]))
                            yield Block(index, unit.file, bytes(buf[:cut]), base, base + cut, line, False, False, False)
                            del buf[:cut]
                            base += cut
                        continue
                    m = None  # the file ends inside the line
                tail_end, line_end = (m.start(), m.end()) if m else (len(buf), len(buf))
                pieces = split_long(bytes(buf[:tail_end]), limit)
                origin = base
                for j, piece in enumerate(pieces):
                    last = j == len(pieces) - 1
                    stop = origin + line_end if last else base + len(piece)
                    yield Block(index, unit.file, piece, base, stop, line, False, False, last, int(last))
                    base = stop
                del buf[:line_end]
                line = None if line is None else line + 1
                in_line = False
                continue
            end = _last_line_end(buf, eof)
            finishing = False
            if unit.stop is not None and base + len(buf) > unit.stop:
                q = _line_start_at_or_after(buf, unit.stop - base, eof)
                if q is not None and q <= end:
                    end, finishing = q, True
            if end > 0:
                data = bytes(buf[:end])
                n = count_lines(data)
                yield Block(index, unit.file, data, base, base + end, line, True, lines=n)
                line = None if line is None else line + n
                del buf[:end]
                base += end
            if finishing or (eof and not buf):
                return
            if limit is not None and len(buf) > limit and not EOL.search(buf):
                # A line with no end in sight: hand out the pieces it will surely have.
                first = True
                while len(buf) > limit:
                    cut = cut_point(bytes(buf[:limit]))
                    yield Block(index, unit.file, bytes(buf[:cut]), base, base + cut, line, False, first, False)
                    del buf[:cut]
                    base += cut
                    first = False
                in_line = True
    except (OSError, EOFError) as e:
        raise InputError(f"{f.name}: cannot read ({e})") from None
    finally:
        stream.close()
        raw.close()
