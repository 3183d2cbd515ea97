"""Parquet and Arrow inputs: one document per row of the --text-key column, read with pyarrow.

The main process decodes the one column it needs, a bounded batch at a time (a Parquet row
group is streamed, never loaded whole: pyarrow's default row group is a million rows), and
hands the workers `Rows`: the values' bytes end to end and their offsets, no Python object per
row. The workers apply the same rules to each value as to a `.jsonl` text field (NUL, invalid
UTF-8, blank, --max-doc-bytes). pyarrow is imported only here and only when such a file is read.

Positions: row r of a file of R rows and S bytes lies at S*r//R, so `--part` byte ranges and
tokenizer-sample windows select rows the way they select lines of a text file, and a resume
cursor is a row number.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from preprocess.blocks import Cursor, ProgressFn, UnitMeter
from preprocess.streams import require_regular
from preprocess.errors import InputError, UsageError
from preprocess.inputs import InputFile, Unit, import_pyarrow

_READ_BUFFER = 1 << 20  # Parquet column chunks are streamed through a buffer this size
_MAX_BATCH_ROWS = 65536


@dataclass(frozen=True, slots=True)
class Rows:
    """Consecutive rows of one file's text column, for one worker task."""

    unit: int
    file: int
    first_row: int  # the file's row number of the first row (counted from 0)
    data: bytes  # the values end to end: UTF-8 text (string columns) or raw bytes (binary columns)
    offsets: np.ndarray  # int64, one more than rows: row k is data[offsets[k]:offsets[k + 1]]
    nulls: np.ndarray | None  # bool per row: the value is null; None when none is
    whole: ClassVar[bool] = True  # the task interface Encoding relies on (see blocks.Block)
    last: ClassVar[bool] = True

    @property
    def end_row(self) -> int:
        return self.first_row + len(self.offsets) - 1

    def cursor(self) -> Cursor:
        return Cursor(self.unit, self.end_row, None)


def row_at(position: int, size: int, rows: int) -> int:
    """The first row whose position size*r//rows is >= position (rows when there is none)."""
    if size <= 0:
        return 0
    return min(rows, -(-position * rows // size))


def check_columns(files: list[InputFile], text_key: str) -> None:
    """Open every Parquet and Arrow input once, so a missing or non-text --text-key column is
    refused before any encoding, not when the run reaches that file."""
    for f in files:
        if f.fmt in ("parquet", "arrow"):
            Table(f, text_key).close()


def read_rows(files: list[InputFile], units: list[Unit], index: int, *, text_key: str, block_bytes: int,
              resume: Cursor | None = None, progress: ProgressFn | None = None) -> Iterator[Rows]:
    """The rows of unit `index`, from its start or from `resume` (a row number), in tasks of
    about `block_bytes` of text (one row may be longer)."""
    unit = units[index]
    f = files[unit.file]
    table = Table(f, text_key)
    try:
        total = table.rows
        start = row_at(unit.start, f.size, total) if resume is None else resume.offset
        stop = total if unit.stop is None else row_at(unit.stop, f.size, total)
        meter = UnitMeter(f, unit, progress)
        position = lambda row: f.size * row // total if total else 0  # noqa: E731 - the rule in the docstring
        meter.at(position(start), resumed=resume is not None)
        for first, array in table.arrays(start, stop, block_bytes):
            for rows in _cut(array, unit=index, file=unit.file, first_row=first, block_bytes=block_bytes):
                yield rows
                meter.at(position(rows.end_row))
        meter.finish()
    except (InputError, UsageError):
        raise
    except Exception as e:  # pyarrow's errors (ArrowInvalid, ArrowIOError, ...) say what is wrong
        if not (_is_arrow_error(e) or isinstance(e, OSError)):
            raise
        raise InputError(f"{f.name}: cannot read ({e})") from None
    finally:
        table.close()


class Table:
    """An open Parquet or Arrow (IPC file or stream, as `datasets.save_to_disk` writes) file:
    its row count and its text column as Arrow arrays."""

    def __init__(self, f: InputFile, text_key: str):
        self.f, self.key = f, text_key
        pa = import_pyarrow(f.name, f.fmt)
        self._source: Any = None
        require_regular(f)  # pyarrow would wait on a FIFO swapped in since the inputs were listed
        try:
            if f.fmt == "parquet":
                import pyarrow.parquet as pq

                self._pf = pq.ParquetFile(str(f.path), buffer_size=_READ_BUFFER, pre_buffer=False)
                schema, meta = self._pf.schema_arrow, self._pf.metadata
                self.groups = [meta.row_group(j).num_rows for j in range(meta.num_row_groups)]
            else:
                self._source = pa.memory_map(str(f.path))  # zero-copy: a batch costs page cache, not heap
                schema = self._open_arrow().schema
                self.groups = [b.num_rows for b in self._arrow_batches()]
        except Exception as e:
            self.close()
            if not _is_arrow_error(e) and not isinstance(e, OSError):
                raise
            what = "a Parquet file" if f.fmt == "parquet" else "an Arrow IPC file or stream"
            raise InputError(f"{f.name}: not readable as {what} ({e})") from None
        self.column = schema.get_field_index(text_key)
        if self.column < 0:
            self.close()
            names = ", ".join(schema.names[:12]) + (", ..." if len(schema.names) > 12 else "")
            raise UsageError(f"{f.name}: no column {text_key!r} (columns: {names}); choose one with --text-key")
        kind = schema.field(self.column).type
        if not _is_text(pa, kind):
            self.close()
            text = [n for n, t in zip(schema.names, schema.types) if _is_text(pa, t)]
            hint = f" (text columns: {', '.join(text[:12])})" if text else ""
            raise UsageError(f"{f.name}: column {text_key!r} holds {kind}, not text; choose a string column "
                             f"with --text-key{hint}")
        self.rows = sum(self.groups)

    def arrays(self, start: int, stop: int, block_bytes: int) -> Iterator[tuple[int, Any]]:
        """(first row, Arrow array) covering rows [start, stop) of the text column, in order."""
        for first, array in self._chunks(start, block_bytes):
            if first >= stop:
                return
            lo, hi = max(start - first, 0), min(stop - first, len(array))
            if lo < hi:
                yield first + lo, array.slice(lo, hi - lo)
            if first + len(array) >= stop:
                return

    def _chunks(self, start: int, block_bytes: int) -> Iterator[tuple[int, Any]]:
        """(first row, array) from the row group or record batch holding row `start` on. Rows
        before it in that group are decoded and dropped: Parquet cannot be entered mid-group."""
        row = 0
        if self.f.fmt != "parquet":
            for batch in self._arrow_batches():  # mapped: a batch skipped costs no reading
                if row + batch.num_rows > start:
                    yield row, batch.column(self.column)
                row += batch.num_rows
            return
        for j, n in enumerate(self.groups):
            if row + n > start:
                meta = self._pf.metadata.row_group(j)
                per_row = max(1, _column_bytes(meta, self.key) // max(n, 1))
                size = max(1, min(_MAX_BATCH_ROWS, block_bytes // per_row))
                first = row
                for batch in self._pf.iter_batches(batch_size=size, row_groups=[j], columns=[self.key],
                                                   use_threads=False):
                    yield first, batch.column(0)
                    first += batch.num_rows
            row += n

    def _open_arrow(self):
        import pyarrow as pa

        self._source.seek(0)
        if self._source.read(6) == b"ARROW1":  # the IPC file format; save_to_disk writes the stream format
            self._source.seek(0)
            return pa.ipc.open_file(self._source)
        self._source.seek(0)
        return pa.ipc.open_stream(self._source)

    def _arrow_batches(self) -> Iterator[Any]:
        reader = self._open_arrow()
        if hasattr(reader, "num_record_batches"):
            yield from (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            yield from reader

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        pf = getattr(self, "_pf", None)
        if pf is not None and hasattr(pf, "close"):
            pf.close()


def _cut(array, *, unit: int, file: int, first_row: int, block_bytes: int) -> Iterator[Rows]:
    """Rows tasks of about block_bytes from one Arrow array of values."""
    import pyarrow as pa

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if not any(t(array.type) for t in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                                       pa.types.is_large_binary)):
        array = array.cast(pa.large_binary())  # string_view and friends
    wide = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    n = len(array)
    _, offsets_buf, data_buf = array.buffers()
    width = 8 if wide else 4
    offsets = np.frombuffer(offsets_buf, dtype=np.int64 if wide else np.int32, count=n + 1,
                            offset=array.offset * width).astype(np.int64)
    nulls = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
    k = 0
    while k < n:
        stop = int(np.searchsorted(offsets, offsets[k] + block_bytes, side="right")) - 1
        stop = min(max(stop, k + 1), n)
        a, b = int(offsets[k]), int(offsets[stop])
        data = data_buf.slice(a, b - a).to_pybytes() if data_buf is not None and b > a else b""
        yield Rows(unit, file, first_row + k, data, offsets[k:stop + 1] - a,
                   None if nulls is None or not nulls[k:stop].any() else nulls[k:stop].copy())
        k = stop


def _column_bytes(meta, key: str) -> int:
    """Uncompressed bytes of the column in a Parquet row group (the whole group when unknown)."""
    for c in range(meta.num_columns):
        col = meta.column(c)
        if col.path_in_schema == key:
            return col.total_uncompressed_size
    return meta.total_byte_size


def _is_text(pa, kind) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    tests = ("is_string", "is_large_string", "is_binary", "is_large_binary", "is_string_view", "is_binary_view")
    return any(getattr(pa.types, t, lambda _: False)(kind) for t in tests)


def _is_arrow_error(e: BaseException) -> bool:
    return type(e).__module__.startswith("pyarrow")

