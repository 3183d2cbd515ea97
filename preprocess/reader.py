"""Reading documents out of input files in bounded memory: encodings, line ends, bad bytes.

A `.txt` line is a document; a `.jsonl` line holds one under its text key. Lines end with
`\\n`, `\\r\\n` or `\\r`. A UTF-8 byte order mark is dropped, NUL bytes are removed and
counted, invalid UTF-8 becomes U+FFFD and is counted (or stops the run with --errors strict),
and empty or whitespace-only documents are skipped and counted. A document longer than
`max_doc_bytes` is cut into pieces (see `cut_point`) that are tokenized separately and joined.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from preprocess.errors import InputError
from preprocess.inputs import InputFile, Unit

_CHUNK = 1 << 20  # bytes read per step
EOL = re.compile(rb"\r\n|\r|\n")
BOM = b"\xef\xbb\xbf"
_FFFD = b"\xef\xbf\xbd"
_SURROGATE = re.compile("[\ud800-\udfff]")
# Where a long document may be cut: right after a sentence end, else after a space.
_SENTENCE_ENDS = tuple(s.encode() for s in ("\u3002", "\uff01", "\uff1f", ". ", "! ", "? ", "\n"))


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where reading resumes: unit `unit` at decompressed byte `offset`, a line start."""

    unit: int
    offset: int
    line: int | None  # 1-based line number at `offset`; None when the unit began mid-file

    def to_json(self) -> dict:
        return {"unit": self.unit, "offset": self.offset, "line": self.line}


@dataclass(slots=True)
class Piece:
    """Text to tokenize. `ends_doc` marks a document's last piece; only that one has a cursor."""

    text: str
    ends_doc: bool
    file: int
    replaced: int
    nul: int
    cursor: Cursor | None
    nbytes: int  # UTF-8 bytes of `text` as read


@dataclass(slots=True)
class Skip:
    """A line that gives no document, and why: empty, whitespace, bad_json or no_text."""

    file: int
    reason: str
    replaced: int
    nul: int
    cursor: Cursor


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


def split_long(data: bytes, max_bytes: int) -> list[bytes]:
    """Cut `data` into pieces of at most max_bytes with `cut_point` (one piece if it fits)."""
    pieces = []
    while len(data) > max_bytes:
        cut = cut_point(data[:max_bytes])
        pieces.append(data[:cut])
        data = data[cut:]
    pieces.append(data)
    return pieces


def open_binary(f: InputFile) -> tuple[BinaryIO, BinaryIO]:
    """(decompressed stream, raw file); the raw file's position measures progress."""
    try:
        raw = open(f.path, "rb")
    except OSError as e:
        raise InputError(f"{f.name}: cannot open ({e.strerror})") from None
    if f.compression is None:
        return raw, raw
    if f.compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    if f.compression == "bz2":
        return bz2.BZ2File(raw, mode="rb"), raw
    if f.compression == "xz":
        return lzma.LZMAFile(raw, mode="rb"), raw
    import zstandard

    # read_across_frames: pzstd and concatenated files hold several frames; stopping after the
    # first would silently drop the rest.
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True), raw


def first_line_start(stream: BinaryIO, start: int) -> int:
    """The first offset >= start where a line begins: 0, or just past a line end."""
    if start == 0:
        return 0
    stream.seek(start - 1)
    prev = stream.read(1)
    if prev == b"\n":
        return start
    if prev == b"\r":
        return start + 1 if stream.read(1) == b"\n" else start
    pos = start
    while chunk := stream.read(_CHUNK):
        m = EOL.search(chunk)
        if m is None:
            pos += len(chunk)
            continue
        end = pos + m.end()
        if m.group() == b"\r" and m.end() == len(chunk) and stream.read(1) == b"\n":
            end += 1
        return end
    return pos


def read_lines(stream: BinaryIO, offset: int, stop: int | None, max_bytes: int | None
               ) -> Iterator[tuple[bytes, bool, bool, int]]:
    """(data, first, last, end) for every line, or piece of a line, starting before `stop`.

    `stream` is positioned at `offset`, a line start. A line over max_bytes comes in pieces;
    `first`/`last` tell whether a piece begins/ends its line; `end` is the stream offset just
    past the piece (for a line's last piece: the next line's start). Memory stays within
    max_bytes plus one read chunk, however long the line.
    """
    buf, base, first = bytearray(), offset, True  # base: offset of buf[0]; first: buf[0] starts a line
    scan = 0  # buf[:scan] holds no line end: a long line is not searched again on every read
    while True:
        chunk = stream.read(_CHUNK)
        eof = not chunk
        buf += chunk
        pos = 0
        for m in EOL.finditer(buf, scan):
            if m.group() == b"\r" and m.end() == len(buf) and not eof:
                break  # may be the first half of a \r\n split across reads
            if first and stop is not None and base + pos >= stop:
                return
            yield from _line_pieces(bytes(buf[pos:m.start()]), first, base + pos, base + m.end(), max_bytes)
            pos, first = m.end(), True
        del buf[:pos]
        base += pos
        scan = max(0, len(buf) - 1)
        if first and buf and stop is not None and base >= stop:
            return
        if eof:
            if buf:
                yield from _line_pieces(bytes(buf), first, base, base + len(buf), max_bytes)
            return
        # A line with no end in sight yet: hand out the pieces it will surely have.
        while max_bytes is not None and len(buf) > max_bytes and not EOL.search(buf):
            cut = cut_point(bytes(buf[:max_bytes]))
            yield bytes(buf[:cut]), first, False, base + cut
            del buf[:cut]
            base, first, scan = base + cut, False, 0


def _line_pieces(line: bytes, first: bool, start: int, end: int, max_bytes: int | None):
    parts = split_long(line, max_bytes) if max_bytes is not None and len(line) > max_bytes else [line]
    for j, part in enumerate(parts):
        last = j == len(parts) - 1
        start += len(part)
        yield part, first and j == 0, last, end if last else start


def read_unit(files: list[InputFile], units: list[Unit], index: int, *, text_key: str, errors: str,
              max_doc_bytes: int) -> Iterator[Piece | Skip]:
    """Pieces and skips of unit `index`, line by line in this process (tokenizer samples, the
    engine check; the main run goes through blocks.read_blocks and the workers)."""
    unit = units[index]
    f = files[unit.file]
    stream, raw = open_binary(f)
    try:
        offset = first_line_start(stream, unit.start)
        stream.seek(offset)
        line = 1 if offset == 0 else None
        txt_limit = max_doc_bytes if f.fmt == "txt" else None
        for data, first, last, end in read_lines(stream, offset, unit.stop, txt_limit):
            cursor = Cursor(index, end, None if line is None else line + 1) if last else None
            yield from document(f, unit.file, data, first, last, offset, line, errors, text_key,
                                max_doc_bytes, cursor)
            offset = end
            if last and line is not None:
                line += 1
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise InputError(f"{f.name}: cannot read ({e})") from None
    finally:
        stream.close()
        raw.close()


def _where(f: InputFile, line: int | None, offset: int) -> str:
    return f"{f.name}:{line}" if line is not None else f"{f.name} (line at byte {offset})"


def document(f: InputFile, file_index: int, data: bytes, first: bool, last: bool, offset: int,
             line: int | None, errors: str, text_key: str, max_doc_bytes: int,
             cursor: Cursor | None) -> Iterator[Piece | Skip]:
    """The rules for one line (or piece of one): what it yields as a document, or why not."""
    if offset == 0 and data.startswith(BOM):
        data = data[len(BOM):]
    nul = data.count(0)
    if nul:
        data = data.replace(b"\0", b"")
    try:
        text, replaced = data.decode("utf-8"), 0
    except UnicodeDecodeError as e:
        if errors == "strict":
            raise InputError(f"{_where(f, line, offset)}: invalid UTF-8 (byte {offset + e.start} of the "
                             "decompressed file); fix the file or pass --errors replace") from None
        text = data.decode("utf-8", "replace")
        replaced = text.count("\ufffd") - data.count(_FFFD)
    if f.fmt == "jsonl":
        yield from _jsonl(f, file_index, text, offset, line, errors, text_key, max_doc_bytes, cursor, replaced, nul)
    elif first and last and not text.strip():
        yield Skip(file_index, "whitespace" if text else "empty", replaced, nul, cursor)
    else:
        yield Piece(text, last, file_index, replaced, nul, cursor, len(data))


def _jsonl(f: InputFile, file_index: int, line_text: str, offset: int, line: int | None, errors: str,
           text_key: str, max_doc_bytes: int, cursor: Cursor, replaced: int, nul: int) -> Iterator[Piece | Skip]:
    if not line_text.strip():
        yield Skip(file_index, "empty", replaced, nul, cursor)
        return
    try:
        obj = json.loads(line_text)
    except json.JSONDecodeError as e:
        if errors == "strict":
            raise InputError(f"{_where(f, line, offset)}: not valid JSON ({e.msg}); fix the line or "
                             "pass --errors replace to skip and count such lines") from None
        yield Skip(file_index, "bad_json", replaced, nul, cursor)
        return
    doc = obj.get(text_key) if isinstance(obj, dict) else None
    if not isinstance(doc, str):
        if errors == "strict":
            raise InputError(f"{_where(f, line, offset)}: no string field {text_key!r}; "
                             "choose the field with --text-key")
        yield Skip(file_index, "no_text", replaced, nul, cursor)
        return
    if "\0" in doc:
        nul += doc.count("\0")
        doc = doc.replace("\0", "")
    if _SURROGATE.search(doc):  # JSON may escape lone surrogates, which are not text
        if errors == "strict":
            raise InputError(f"{_where(f, line, offset)}: lone surrogate escape in {text_key!r}; "
                             "fix the line or pass --errors replace")
        doc, n = _SURROGATE.subn("\ufffd", doc)
        replaced += n
    if not doc.strip():
        yield Skip(file_index, "whitespace" if doc else "empty", replaced, nul, cursor)
        return
    data = doc.encode("utf-8")
    if len(data) <= max_doc_bytes:
        yield Piece(doc, True, file_index, replaced, nul, cursor, len(data))
        return
    parts = split_long(data, max_doc_bytes)
    for j, part in enumerate(parts):
        last = j == len(parts) - 1
        yield Piece(part.decode("utf-8", "replace"), last, file_index,
                    replaced if j == 0 else 0, nul if j == 0 else 0, cursor if last else None, len(part))
