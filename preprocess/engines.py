"""Turning text into ids inside worker processes: the same ids as AutoTokenizer, by construction.

`AutoTokenizer.from_pretrained(DIR/tokenizer).encode(doc, add_special_tokens=False)` is the
truth. `choose_engine` picks, from what the directory holds, an engine that computes exactly it:

- sentencepiece: SentencePiece itself, for unigram models trained here, whose premises
  `preprocess.spm_exact` checks (the fastest: 6x the `tokenizers` engine on Japanese);
- tokenizers: the `tokenizers.Tokenizer` AutoTokenizer runs (its fast tokenizer *is* this
  engine): tokenizer.json itself for a plain directory (`preprocess.tokenizer_dir`), else the
  backend of the loaded AutoTokenizer, saved as it stands in memory;
- transformers: `AutoTokenizer.encode` one document at a time, for anything else (slow).

No engine is chosen by comparing outputs on a sample: a sample cannot see the rare documents
(ties, long texts) where engines disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from preprocess.errors import TokenizerError

ENGINES = ("sentencepiece", "tokenizers", "transformers")
Encoder = Callable[[Sequence[str]], list[list[int]]]


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Everything a worker process needs to build its encoder (picklable)."""

    engine: str
    tokenizer_dir: str
    backend_file: str | None = None
    """tokenizers: the tokenizer.json to run (default: tokenizer_dir's own)."""
    split_special: bool = True
    """tokenizers: text spelling a special token is encoded as text (AutoTokenizer's split_special_tokens)."""
    lowest_score: float | None = None
    """sentencepiece: tokenizer.json's lowest score as `tokenizers` loads it (spm_exact.check, once)."""

    def describe(self) -> str:
        """For people: which engine, and why its ids are AutoTokenizer's."""
        return {"sentencepiece": "SentencePiece (the same ids as AutoTokenizer, by construction)",
                "tokenizers": "the tokenizers library (AutoTokenizer's own engine)",
                "transformers": "AutoTokenizer itself, one document at a time (slow: this tokenizer is not "
                                "backed by the tokenizers library)",
                }.get(self.engine, self.engine)

    def to_json(self) -> dict:
        """For the journal; the backend file is named relative to the tokenizer's parent (the
        run's work directory), which may have moved by the time a run resumes."""
        name = Path(self.backend_file).name if self.backend_file else None
        return {"engine": self.engine, "backend_file": name, "split_special": self.split_special,
                "lowest_score": self.lowest_score}

    @classmethod
    def from_json(cls, data: dict, tokenizer_dir: str) -> EngineSpec:
        name = data["backend_file"]
        backend = str(Path(tokenizer_dir).parent / name) if name else None
        return cls(data["engine"], tokenizer_dir, backend, bool(data["split_special"]), data["lowest_score"])


def make_encoder(spec: EngineSpec) -> Encoder:
    """A function from texts to their ids, without special tokens."""
    tok_dir = Path(spec.tokenizer_dir)
    if spec.engine == "sentencepiece":
        from preprocess.spm_exact import ExactEncoder

        if spec.lowest_score is None:
            raise ValueError("the sentencepiece engine needs tokenizer.json's lowest score (from choose_engine)")
        return ExactEncoder(tok_dir, spec.lowest_score,
                            fallback=lambda: _tokenizers(tok_dir / "tokenizer.json", True))
    if spec.engine == "tokenizers":
        return _tokenizers(Path(spec.backend_file) if spec.backend_file else tok_dir / "tokenizer.json",
                           spec.split_special)
    if spec.engine == "transformers":
        from shards.tokenizer_guard import load_tokenizer

        tok = load_tokenizer(tok_dir, "the tokenizer")
        return lambda texts: [tok.encode(t, add_special_tokens=False) for t in texts]
    raise ValueError(f"unknown engine {spec.engine!r}")


def _tokenizers(path: Path, split_special: bool) -> Encoder:
    """What TokenizersBackend.encode(text, add_special_tokens=False) does: its backend, special
    tokens in text split or not, truncation and padding off (as encode turns them off)."""
    from tokenizers import Tokenizer  # one thread: preprocess.worker.init sets TOKENIZERS_PARALLELISM

    tk = Tokenizer.from_file(str(path))
    tk.no_truncation()
    tk.no_padding()
    tk.encode_special_tokens = split_special
    encode = tk.encode_batch_fast if hasattr(tk, "encode_batch_fast") else tk.encode_batch
    return lambda texts: [e.ids for e in encode(list(texts), add_special_tokens=False)]


def choose_engine(tok_dir: Path, work_dir: Path, loaded=None) -> EngineSpec:
    """The fastest engine that computes AutoTokenizer's ids for DIR/tokenizer by construction.

    `loaded` is the AutoTokenizer of tok_dir when the caller has one (a directory that is not
    plain needs it; `work_dir` then receives its backend as engine.json).
    """
    from preprocess import spm_exact
    from preprocess.tokenizer_dir import plain

    facts = plain(tok_dir)
    if facts is not None:
        problem, lowest_score = spm_exact.check(tok_dir, facts.split_special)
        if problem is None:
            return EngineSpec("sentencepiece", str(tok_dir), lowest_score=lowest_score)
        return EngineSpec("tokenizers", str(tok_dir), split_special=facts.split_special)
    if loaded is None:
        from shards.tokenizer_guard import load_tokenizer

        loaded = load_tokenizer(tok_dir, str(tok_dir))
    if _runs_its_backend(loaded):
        backend_file = work_dir / "engine.json"
        backend_file.write_text(loaded.backend_tokenizer.to_str(), encoding="utf-8")
        return EngineSpec("tokenizers", str(tok_dir), str(backend_file), bool(loaded.split_special_tokens))
    return EngineSpec("transformers", str(tok_dir))


def _runs_its_backend(tok) -> bool:
    """encode() is TokenizersBackend's own: straight to its `tokenizers` backend, no Python-side
    text handling in a subclass, and no truncation or padding it would apply by default."""
    try:
        from transformers import TokenizersBackend
    except ImportError:
        return False
    cls = type(tok)
    if not isinstance(tok, TokenizersBackend):
        return False
    same = all(getattr(cls, name) is getattr(TokenizersBackend, name)
               for name in ("encode", "_encode_plus", "set_truncation_and_padding"))
    backend = tok.backend_tokenizer
    return same and backend.truncation is None and backend.padding is None


def to_array(ids: list[list[int]], eos_id: int | None, ends: Sequence[bool], dtype: np.dtype,
             vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Flatten encodings into (tokens, lengths), EOS appended after each piece that ends a document.

    Every id is checked against the vocabulary (and `dtype`) before narrowing: nothing is truncated.
    """
    if eos_id is not None:
        for x, end in zip(ids, ends):  # EOS after each piece that ends a document
            if end:
                x.append(eos_id)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    total = int(lengths.sum())
    # Into int64 first (iterating in C: a generator expression here cost a third of the
    # tokenizer's own time), checked there, then narrowed: numpy 1.26 narrows an id that does
    # not fit without a word (70000 becomes 4464 in uint16, inside the vocabulary).
    try:
        wide = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=total)
    except OverflowError as e:
        raise TokenizerError(f"the tokenizer produced an id that does not fit int64 ({e}); "
                             "it cannot be stored without truncating it") from None
    if total:
        low, high = int(wide.min()), int(wide.max())
        if low < 0 or high >= vocab_size:
            raise TokenizerError(f"the tokenizer produced id {low if low < 0 else high}, outside its vocabulary of "
                                 f"{vocab_size}; it cannot be stored without truncating ids")
        if high > np.iinfo(dtype).max:
            raise TokenizerError(f"the tokenizer produced id {high}, which does not fit {np.dtype(dtype).name}; "
                                 "it cannot be stored without truncating it")
    return wide.astype(dtype), lengths
