"""What a line or a value becomes: the rules for documents, the same for every input format.

A `.txt` line is a document; a `.jsonl` line holds one under its text key; a Parquet or Arrow
row holds one in its text-key column (lines come from `preprocess.blocks`, rows from
`preprocess.columnar`). A UTF-8 byte order mark at the start of a file is dropped, NUL bytes
are removed and counted, invalid UTF-8 becomes U+FFFD and is counted (or stops the run with
--errors strict), and empty or whitespace-only documents are skipped and counted, as are JSON
lines that do not parse and missing or null values. A document longer than `max_doc_bytes` is
cut into pieces (see `blocks.cut_point`) that are tokenized separately and joined. The worker
processes and `read_unit` (this process: tokenizer samples, the engine check) both go through
`task_items`, so there is one definition of these rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from preprocess.blocks import (BLOCK_BYTES, BOM, Block, Cursor, ProgressFn, block_lines, line_limit, read_blocks,
                               split_long)
from preprocess.columnar import Rows, read_rows
from preprocess.errors import InputError
from preprocess.inputs import COLUMNAR, InputFile, Unit

__all__ = ["Cursor", "Piece", "Skip", "read_unit", "task_items", "tasks"]

_FFFD = b"\xef\xbf\xbd"
_SURROGATE = re.compile("[\ud800-\udfff]")


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
    """A line or row that gives no document, and why: empty, whitespace, bad_json or no_text."""

    file: int
    reason: str
    replaced: int
    nul: int
    cursor: Cursor | None


Task = Block | Rows


def tasks(files: list[InputFile], units: list[Unit], index: int, *, text_key: str, max_doc_bytes: int,
          block_bytes: int = BLOCK_BYTES, resume: Cursor | None = None,
          progress: ProgressFn | None = None) -> Iterator[Task]:
    """Unit `index` cut into worker tasks: blocks of whole lines, or rows of a column."""
    if files[units[index].file].fmt in COLUMNAR:
        return read_rows(files, units, index, text_key=text_key, block_bytes=block_bytes, resume=resume,
                         progress=progress)
    return read_blocks(files, units, index, max_doc_bytes=max_doc_bytes, block_bytes=block_bytes,
                       resume=resume, progress=progress)


def read_unit(files: list[InputFile], units: list[Unit], index: int, *, text_key: str, errors: str,
              max_doc_bytes: int) -> Iterator[Piece | Skip]:
    """Pieces and skips of unit `index`, in this process (tokenizer samples, the engine check;
    the main run hands the same tasks to worker processes)."""
    for task in tasks(files, units, index, text_key=text_key, max_doc_bytes=max_doc_bytes):
        yield from task_items(task, files, text_key=text_key, errors=errors, max_doc_bytes=max_doc_bytes)


def task_items(task: Task, files: list[InputFile], *, text_key: str, errors: str,
               max_doc_bytes: int) -> Iterator[Piece | Skip]:
    """The documents (pieces) and skips of one task, in order."""
    f = files[task.file]
    if isinstance(task, Rows):
        yield from _row_items(task, f, errors, text_key, max_doc_bytes)
        return
    line = task.line
    offset = task.offset
    for data, first, last, end in block_lines(task, line_limit(f, max_doc_bytes)):
        cursor = Cursor(task.unit, end, None if line is None else line + 1) if last else None
        yield from line_items(f, task.file, data, first, last, offset, line, errors, text_key,
                              max_doc_bytes, cursor)
        offset = end
        if last and line is not None:
            line += 1


def decode(data: bytes, errors: str, where: str, byte: Callable[[int], str]) -> tuple[str, int, int]:
    """(text, replaced characters, NUL bytes removed) of raw bytes. For --errors strict, `where`
    names the line or row and `byte(i)` its byte i."""
    nul = data.count(0)
    if nul:
        data = data.replace(b"\0", b"")
    try:
        return data.decode("utf-8"), 0, nul
    except UnicodeDecodeError as e:
        if errors == "strict":
            raise InputError(f"{where}: invalid UTF-8 ({byte(e.start)}); fix the file or pass --errors replace") from None
    text = data.decode("utf-8", "replace")
    return text, text.count("\ufffd") - data.count(_FFFD), nul  # a U+FFFD in the text is not a replacement


def _at_line(f: InputFile, line: int | None, offset: int) -> str:
    return f"{f.name}:{line}" if line is not None else f"{f.name} (line at byte {offset})"


def line_items(f: InputFile, file_index: int, data: bytes, first: bool, last: bool, offset: int,
               line: int | None, errors: str, text_key: str, max_doc_bytes: int,
               cursor: Cursor | None) -> Iterator[Piece | Skip]:
    """The rules for one line (or piece of one) of a .txt or .jsonl file."""
    if offset == 0 and data.startswith(BOM):
        data = data[len(BOM):]
    text, replaced, nul = decode(data, errors, _at_line(f, line, offset),
                                 lambda i: f"byte {offset + i} of the decompressed file")
    if f.fmt == "jsonl":
        yield from _json_line(f, file_index, text, offset, line, errors, text_key, max_doc_bytes, cursor,
                              replaced, nul)
    elif first and last and not text.strip():
        yield Skip(file_index, "whitespace" if text else "empty", replaced, nul, cursor)
    else:
        yield Piece(text, last, file_index, replaced, nul, cursor, len(data) - nul)


def _json_line(f: InputFile, file_index: int, line_text: str, offset: int, line: int | None, errors: str,
               text_key: str, max_doc_bytes: int, cursor: Cursor | None, replaced: int,
               nul: int) -> Iterator[Piece | Skip]:
    if not line_text.strip():
        yield Skip(file_index, "empty", replaced, nul, cursor)
        return
    where = _at_line(f, line, offset)
    try:
        obj = json.loads(line_text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, an integer of over 4,300 digits, deep nesting
        if errors == "strict":
            raise InputError(f"{where}: not valid JSON ({_json_reason(e)}); fix the line or pass --errors replace "
                             "to skip and count such lines") from None
        yield Skip(file_index, "bad_json", replaced, nul, cursor)
        return
    doc = obj.get(text_key) if isinstance(obj, dict) else None
    if not isinstance(doc, str):
        if errors == "strict":
            raise InputError(f"{where}: no string field {text_key!r}; choose the field with --text-key")
        yield Skip(file_index, "no_text", replaced, nul, cursor)
        return
    yield from value_items(doc, file_index, where, errors, text_key, max_doc_bytes, cursor, replaced, nul)


def _json_reason(e: ValueError | RecursionError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return e.msg
    if isinstance(e, RecursionError):
        return "nested too deeply to parse"
    return str(e).split(";")[0]  # "Exceeds the limit (4300 digits) for integer string conversion: ..."


def value_items(doc: str, file_index: int, where: str, errors: str, text_key: str, max_doc_bytes: int,
                cursor: Cursor | None, replaced: int, nul: int) -> Iterator[Piece | Skip]:
    """The rules for a document held in a JSON field: NUL characters and lone surrogates (JSON
    may escape them), then those of every value (`_text_items`)."""
    if "\0" in doc:
        nul += doc.count("\0")
        doc = doc.replace("\0", "")
    if _SURROGATE.search(doc):  # JSON may escape lone surrogates, which are not text
        if errors == "strict":
            raise InputError(f"{where}: lone surrogate escape in {text_key!r}; fix it or pass --errors replace")
        doc, n = _SURROGATE.subn("\ufffd", doc)
        replaced += n
    yield from _text_items(doc, None, file_index, max_doc_bytes, cursor, replaced, nul)


def _text_items(doc: str, data: bytes | None, file_index: int, max_doc_bytes: int, cursor: Cursor | None,
                replaced: int, nul: int) -> Iterator[Piece | Skip]:
    """The rules for a document's text (no NUL, no lone surrogate): blank text is skipped, longer
    than max_doc_bytes is cut into pieces. `data`: its UTF-8 bytes, when the caller has them."""
    if not doc.strip():
        yield Skip(file_index, "whitespace" if doc else "empty", replaced, nul, cursor)
        return
    if data is None:
        data = doc.encode("utf-8")
    if len(data) <= max_doc_bytes:
        yield Piece(doc, True, file_index, replaced, nul, cursor, len(data))
        return
    parts = split_long(data, max_doc_bytes)
    for j, part in enumerate(parts):
        last = j == len(parts) - 1
        yield Piece(part.decode("utf-8", "replace"), last, file_index,
                    replaced if j == 0 else 0, nul if j == 0 else 0, cursor if last else None, len(part))


def _row_items(rows: Rows, f: InputFile, errors: str, text_key: str, max_doc_bytes: int) -> Iterator[Piece | Skip]:
    """The rules for each row of a Parquet or Arrow column: a null is skipped like a JSON line
    without the field; a value's bytes are decoded like a line's."""
    offsets, data = rows.offsets.tolist(), rows.data
    for k in range(len(offsets) - 1):
        row = rows.first_row + k
        cursor = Cursor(rows.unit, row + 1, None)
        where = f"{f.name}: row {row}"
        if rows.nulls is not None and rows.nulls[k]:
            if errors == "strict":
                raise InputError(f"{where}: {text_key!r} is null; pass --errors replace to skip and count such rows")
            yield Skip(rows.file, "no_text", 0, 0, cursor)
            continue
        raw = data[offsets[k]:offsets[k + 1]]
        text, replaced, nul = decode(raw, errors, where, lambda i: f"byte {i} of its {text_key!r} value")
        # Decoded from bytes, the text holds no NUL (removed) and no lone surrogate (UTF-8 has
        # none); with nothing replaced its UTF-8 bytes are the value's own, less the NULs.
        clean = None if replaced else raw.replace(b"\0", b"") if nul else raw
        yield from _text_items(text, clean, rows.file, max_doc_bytes, cursor, replaced, nul)
