"""The settings of one preprocess run (frozen), and which of them shape the output."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preprocess.errors import UsageError
from preprocess.inputs import InputFile


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PreprocessConfig:
    inputs: tuple[str, ...]
    """Files or directories (searched recursively) of .txt / .jsonl (optionally compressed), .parquet / .arrow."""
    out: Path
    """The dataset directory to write (DIR/train and DIR/valid with valid_fraction)."""
    tokenizer: str | None = None
    """A tokenizer directory, a SentencePiece .model file, or a Hugging Face hub name."""
    vocab_size: int | None = None
    """Train a new SentencePiece tokenizer of this size instead of loading one."""
    tokenizer_type: str = "unigram"
    """SentencePiece algorithm when training: unigram or bpe."""
    character_coverage: float = 0.9995
    """Share of characters the trained vocabulary covers; the rest fall back to bytes."""
    sample_bytes: int = 100_000_000
    """At most this many bytes of text, spread over all inputs, train the tokenizer."""
    workers: int = field(default_factory=default_workers)
    """Tokenizer processes; 0 encodes in this process. Never changes the output."""
    shard_tokens: int = 100_000_000
    """Target tokens per shard; a shard ends at the first document boundary past it."""
    no_eos: bool = False
    """Join documents with nothing (the tutorial's stream) instead of an EOS after each."""
    eos_token: str | None = None
    """The token appended after each document, instead of the tokenizer's EOS."""
    text_key: str = "text"
    """The .jsonl field or Parquet/Arrow column that holds the document."""
    errors: str = "replace"
    """replace: invalid UTF-8 becomes U+FFFD, bad lines are skipped, all counted; strict: stop."""
    valid_fraction: float = 0.0
    """Hold out this fraction of documents (by a hash of their text) in DIR/valid."""
    max_doc_bytes: int = 1 << 20
    """Documents longer than this are tokenized in pieces of at most this many bytes."""
    part: tuple[int, int] = (0, 1)
    """(K, N): process the K-th of N equal byte ranges of the inputs (for several machines)."""
    overwrite: bool = False
    quiet: bool = False
    tokenizer_only: bool = False
    """Only build the tokenizer, into `out`, and stop."""
    checkpoint_seconds: float = 10.0
    """How often progress is made durable for resuming after a crash."""

    def __post_init__(self) -> None:
        if (self.tokenizer is None) == (self.vocab_size is None):
            raise UsageError("give exactly one of --tokenizer TOK or --vocab-size N")
        if self.vocab_size is not None and self.vocab_size < 300:
            raise UsageError(f"--vocab-size {self.vocab_size}: at least 300 (256 byte tokens + specials + characters)")
        if self.tokenizer_type not in ("unigram", "bpe"):
            raise UsageError(f"--tokenizer-type {self.tokenizer_type!r}: expected unigram or bpe")
        if self.workers < 0:
            raise UsageError("--workers must be >= 0")
        if self.shard_tokens < 1:
            raise UsageError("--shard-tokens must be positive")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise UsageError(f"--valid-fraction {self.valid_fraction}: expected 0 <= F < 1")
        if self.errors not in ("replace", "strict"):
            raise UsageError(f"--errors {self.errors!r}: expected replace or strict")
        if self.max_doc_bytes < 1024:
            raise UsageError("--max-doc-bytes must be at least 1024")
        if self.no_eos and self.eos_token is not None:
            raise UsageError("--no-eos and --eos-token contradict each other; give one")
        if self.part[1] > 1 and self.vocab_size is not None:
            raise UsageError(
                "--part with --vocab-size would train a different tokenizer in every part; train it once "
                "with `preprocess INPUT... --vocab-size N --tokenizer-only --out TOK`, then pass --tokenizer TOK")

    def settings(self) -> dict[str, Any]:
        """The settings that shape the output (recorded in the manifest; workers etc. are not)."""
        return {
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size,
            "tokenizer_type": self.tokenizer_type if self.vocab_size else None,
            "character_coverage": self.character_coverage if self.vocab_size else None,
            "sample_bytes": self.sample_bytes if self.vocab_size else None,
            "eos": "none" if self.no_eos else (self.eos_token or "tokenizer"),
            "text_key": self.text_key,
            "errors": self.errors,
            "valid_fraction": self.valid_fraction,
            "shard_tokens": self.shard_tokens,
            "max_doc_bytes": self.max_doc_bytes,
            "part": f"{self.part[0]}/{self.part[1]}" if self.part[1] > 1 else None,
        }

    def identity(self, files: list[InputFile]) -> str:
        """Hash of everything that decides the output bytes, for resuming: the settings and each
        input's name, size and modification time (an input edited since the kill starts over)."""
        data = {"settings": self.settings(), "inputs": [[f.name, f.size, f.path.stat().st_mtime_ns] for f in files]}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
