"""Writing small Parquet and Arrow inputs with pyarrow alone (the tests never need `datasets`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_parquet(path: Path, values: list[Any], *, key: str = "text", row_group_size: int = 64,
                  binary: bool = False) -> Path:
    """`values` as column `key` (between an id and a score column, as hub datasets have them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    kind = pa.binary() if binary else pa.string()
    table = pa.table({"id": pa.array(range(len(values)), pa.int64()), key: pa.array(values, kind),
                      "score": pa.array([0.5] * len(values), pa.float64())})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_arrow(path: Path, values: list[Any], *, key: str = "text", batch_rows: int = 50,
                stream: bool = True) -> Path:
    """An Arrow IPC stream (what `datasets` writes) or file, in record batches of `batch_rows`."""
    import pyarrow as pa

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({key: pa.array(values, pa.string()), "id": pa.array(range(len(values)), pa.int64())})
    meta = {b"huggingface": json.dumps({"info": {"features": {key: {"dtype": "string", "_type": "Value"}}}}).encode()}
    table = table.replace_schema_metadata(meta)
    new = pa.ipc.new_stream if stream else pa.ipc.new_file
    with new(str(path), table.schema) as w:
        for batch in table.to_batches(max_chunksize=batch_rows):
            w.write_batch(batch)
    return path


def write_save_to_disk(directory: Path, values: list[Any], *, shards: int = 3, order: list[int] | None = None,
                       batch_rows: int = 50) -> Path:
    """The layout `datasets.Dataset.save_to_disk` writes (checked against datasets 5.2.0 by hand):
    data-0000K-of-0000N.arrow IPC streams, dataset_info.json, and state.json listing the files in
    reading order. `order` lists the shards in state.json's order (default: 0..N-1)."""
    directory.mkdir(parents=True, exist_ok=True)
    per = -(-len(values) // shards)
    names = [f"data-{k:05d}-of-{shards:05d}.arrow" for k in range(shards)]
    order = list(range(shards)) if order is None else order
    for pos, k in enumerate(order):  # the pos-th file in state.json holds the pos-th slice of values
        write_arrow(directory / names[k], values[pos * per:(pos + 1) * per], batch_rows=batch_rows)
    (directory / "dataset_info.json").write_text(json.dumps(
        {"citation": "", "description": "", "features": {"text": {"dtype": "string", "_type": "Value"},
                                                         "id": {"dtype": "int64", "_type": "Value"}}}))
    (directory / "state.json").write_text(json.dumps(
        {"_data_files": [{"filename": names[k]} for k in order], "_fingerprint": "0cf08d4d02263f74",
         "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
         "_split": None}, indent=2))
    return directory
