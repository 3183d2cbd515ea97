"""Turning text into ids inside worker processes, provably the same ids as AutoTokenizer.

Three engines, fastest first: SentencePiece itself (when DIR/tokenizer has tokenizer.model),
the `tokenizers` library on tokenizer.json, and `AutoTokenizer.encode` one document at a time.
`choose_engine` takes the first whose output equals `AutoTokenizer.encode(text,
add_special_tokens=False)` on a fixed set of awkward strings and the corpus's first documents,
so a faster engine is only used where it agrees with the saved tokenizer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from preprocess.errors import TokenizerError

ENGINES = ("sentencepiece", "tokenizers", "transformers")
# Strings where tokenizers tend to disagree: whitespace runs, tabs, CJK, emoji, combining
# marks, full/half width, control characters, byte-token and special-token look-alikes.
PROBES = ("", " ", "  two  spaces ", " lead", "trail ", "tab\there", "a\nb\r\nc\rd", "\u3000全角 空白",
          "😀 𠮷 ☃", "e\u0301 \u00e9", "ＡＢＣ１２３ ｶﾀｶﾅ", "\x01\x02\x7f", "\ufffd", "<0x41> <unk> <s> </s> <pad>",
          "<|endoftext|> [CLS] [SEP] <|im_start|>", "123456789 3.14", "Hello, World! こんにちは、世界。",
          "\u2581\u2581x", "a" * 300)


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Everything a worker process needs to build its encoder (picklable)."""

    engine: str
    tokenizer_dir: str


def make_encoder(spec: EngineSpec) -> Callable[[Sequence[str]], list[list[int]]]:
    """A function from texts to their ids, without special tokens."""
    tok_dir = Path(spec.tokenizer_dir)
    if spec.engine == "sentencepiece":
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
        return lambda texts: sp.encode(list(texts), num_threads=1)
    if spec.engine == "tokenizers":
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker process
        import tokenizers

        tk = tokenizers.Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
        config = tok_dir / "tokenizer_config.json"
        if config.exists() and json.loads(config.read_text(encoding="utf-8")).get("split_special_tokens"):
            tk.encode_special_tokens = True  # what transformers does for split_special_tokens
        encode = tk.encode_batch_fast if hasattr(tk, "encode_batch_fast") else tk.encode_batch
        return lambda texts: [e.ids for e in encode(list(texts), add_special_tokens=False)]
    if spec.engine == "transformers":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        return lambda texts: [tok.encode(t, add_special_tokens=False) for t in texts]
    raise ValueError(f"unknown engine {spec.engine!r}")


def available(tok_dir: Path) -> list[str]:
    engines = []
    if (tok_dir / "tokenizer.model").is_file():
        engines.append("sentencepiece")
    if (tok_dir / "tokenizer.json").is_file():
        engines.append("tokenizers")
    return engines + ["transformers"]


def choose_engine(tok_dir: Path, sample: Sequence[str]) -> tuple[EngineSpec, list[str]]:
    """The fastest engine that agrees with AutoTokenizer on PROBES + `sample`, and the notes on
    engines that were passed over (printed as warnings)."""
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(tok_dir))
    texts = list(PROBES) + list(sample)
    want = [reference.encode(t, add_special_tokens=False) for t in texts]
    notes = []
    for engine in available(tok_dir):
        spec = EngineSpec(engine, str(tok_dir))
        if engine == "transformers":
            return spec, notes
        try:
            got = make_encoder(spec)(texts)
        except Exception as e:  # a broken fast path only costs speed
            notes.append(f"{engine} cannot encode with this tokenizer ({type(e).__name__}: {e}); using a slower engine")
            continue
        bad = next((i for i, (a, b) in enumerate(zip(got, want)) if list(a) != list(b)), None)
        if bad is None:
            return spec, notes
        notes.append(f"{engine} disagrees with AutoTokenizer on {texts[bad][:40]!r}; using a slower engine")
    raise AssertionError("unreachable: transformers is always available")


def to_array(ids: list[list[int]], eos_id: int | None, ends: Sequence[bool], dtype: np.dtype,
             vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Flatten encodings into (tokens, lengths), EOS appended after each piece that ends a document.

    Every id is checked against the vocabulary before narrowing to `dtype`: nothing is truncated.
    """
    if eos_id is not None:
        for x, end in zip(ids, ends):  # EOS after each piece that ends a document
            if end:
                x.append(eos_id)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    total = int(lengths.sum())
    # Straight into the narrow dtype (numpy refuses a value that does not fit), iterating in C:
    # a generator expression here cost a third of the tokenizer's own time.
    try:
        flat = np.fromiter(chain.from_iterable(ids), dtype=dtype, count=total)
    except OverflowError as e:
        raise TokenizerError(f"the tokenizer produced an id that does not fit {np.dtype(dtype).name} ({e}); "
                             "it cannot be stored without truncating it") from None
    if total and int(flat.max()) >= vocab_size:
        raise TokenizerError(f"the tokenizer produced id {int(flat.max())}, outside its vocabulary of {vocab_size}; "
                             "it cannot be stored without truncating ids")
    return flat, lengths
