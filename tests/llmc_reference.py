"""llm.c's own writers, copied in their published layout, so tests read files made the way llm.c makes them.

`write_datafile` is karpathy/llm.c `dev/data/data_common.py` (HEADERS_INFO, write_datafile) with
the print dropped; `fineweb_shards` is the shard loop of `dev/data/fineweb.py` (tokenize_gpt2 /
tokenize_llama and the `for tokens in pool.imap(...)` loop) with the tokenizer and the pool
replaced by already-encoded documents. Both keep llm.c's logic line for line: the delimiter
goes *before* each document, a shard is written when the next document does not fit
(`token_count + len(tokens) < shard_size` is false) and that document is split across the two
files, shard 0 is named "val", the rest "train", and the last shard holds the remainder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HEADERS_INFO = {
    "gpt-2": {"magic": 20240520, "version": 1, "token_dtype": np.uint16},
    "llama-3": {"magic": 20240801, "version": 7, "token_dtype": np.uint32},
}


def write_datafile(filename, toks, model_desc="gpt-2"):
    """Saves token data as a .bin file, for reading in C (llm.c dev/data/data_common.py)."""
    assert len(toks) < 2**31, "token count too large"  # ~2.1B tokens
    assert model_desc in ["gpt-2", "llama-3"], f"unknown model descriptor {model_desc}"
    info = HEADERS_INFO[model_desc]
    header = np.zeros(256, dtype=np.int32)  # header is always 256 int32 values
    header[0] = info["magic"]
    header[1] = info["version"]
    header[2] = len(toks)  # number of tokens after the 256*4 bytes of header
    toks_np = np.array(toks, dtype=info["token_dtype"])
    with open(filename, "wb") as f:
        f.write(header.tobytes())
        f.write(toks_np.tobytes())


def fineweb_shards(docs: Sequence[Sequence[int]], eot: int, out_dir: Path, *, shard_size: int,
                   model_desc: str = "gpt-2", name: str = "fineweb") -> list[Path]:
    """Write encoded documents as llm.c's fineweb.py does; returns the files in shard order."""
    token_dtype = {"gpt-2": np.uint16, "llama-3": np.uint32}[model_desc]
    written = []
    shard_index = 0
    all_tokens_np = np.empty((shard_size,), dtype=token_dtype)
    token_count = 0
    for doc in docs:
        tokens = [eot]  # the special <|endoftext|> token delimits all documents
        tokens.extend(doc)
        tokens = np.array(tokens).astype(token_dtype)
        if token_count + len(tokens) < shard_size:
            all_tokens_np[token_count:token_count + len(tokens)] = tokens
            token_count += len(tokens)
        else:
            split = "val" if shard_index == 0 else "train"
            filename = os.path.join(out_dir, f"{name}_{split}_{shard_index:06d}.bin")
            remainder = shard_size - token_count
            all_tokens_np[token_count:token_count + remainder] = tokens[:remainder]
            write_datafile(filename, all_tokens_np.tolist(), model_desc)
            written.append(Path(filename))
            shard_index += 1
            all_tokens_np[0:len(tokens) - remainder] = tokens[remainder:]
            token_count = len(tokens) - remainder
    if token_count != 0:
        split = "val" if shard_index == 0 else "train"
        filename = os.path.join(out_dir, f"{name}_{split}_{shard_index:06d}.bin")
        write_datafile(filename, (all_tokens_np[:token_count]).tolist(), model_desc)
        written.append(Path(filename))
    return written
