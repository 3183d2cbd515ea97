"""What runs inside each tokenizer worker process (spawned: no state inherited)."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

import numpy as np

from preprocess.encoder import EngineSpec, make_encoder, to_array

_STATE: dict = {}


def init(spec: EngineSpec, eos_id: int | None, dtype: str, vocab_size: int) -> None:
    # Ctrl-C reaches the whole process group: the parent decides what happens, not the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _STATE.update(encode=make_encoder(spec), eos_id=eos_id, dtype=np.dtype(dtype), vocab_size=vocab_size)


def encode(texts: Sequence[str], ends: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, lengths) of a batch of pieces, EOS after the pieces that end a document."""
    s = _STATE
    return to_array(s["encode"](texts), s["eos_id"], ends, s["dtype"], s["vocab_size"])
