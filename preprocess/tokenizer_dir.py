"""What a tokenizer directory holds, read without transformers (which costs over a second of
CPU to import, and imports torch on the way to AutoTokenizer).

A directory is *plain* when `AutoTokenizer.from_pretrained(DIR)` is transformers'
TokenizersBackend running DIR/tokenizer.json unchanged: a generic tokenizer class, no
config.json (whose model type could pick another class), no file besides tokenizer.json,
tokenizer_config.json and tokenizer.model, every special token of the config already in
tokenizer.json (so nothing is added on load), and none of the settings under which
TokenizersBackend rewrites its backend. What `preprocess` writes is plain; for a plain directory
the pipeline reads vocabulary size and special tokens from the files, and its engines encode
with that very tokenizer.json. Anything else is loaded through transformers (`shards.tokenizer_guard`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILES = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model"}
_CLASSES = {"TokenizersBackend", "PreTrainedTokenizerFast"}
# tokenizer_config.json keys that do not change what encode(text, add_special_tokens=False)
# returns or what TokenizersBackend does to its backend on load.
_KEYS = {"backend", "tokenizer_class", "bos_token", "eos_token", "unk_token", "pad_token", "model_max_length",
         "split_special_tokens", "clean_up_tokenization_spaces", "padding_side", "truncation_side",
         "model_input_names"}
_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
# TokenizersBackend patches the pre-tokenizer of tokenizers with more ids than this (Mistral's regex).
_PATCHED_ABOVE = 100_000


@dataclass(frozen=True, slots=True)
class Plain:
    """The facts of a plain tokenizer directory, as AutoTokenizer would report them."""

    vocab_size: int  # room for the largest id (len() and ids agree in tokenizer.json)
    split_special: bool  # text spelling a special token is encoded as text
    tokens: dict[str, str]  # "eos_token" -> "</s>", ... as the config names them
    ids: dict[str, int]  # "eos_token" -> 2, ...
    vocab: dict[str, int]  # every token string -> id, added tokens included


def plain(tok_dir: Path) -> Plain | None:
    """The directory's facts when it is plain (see the module docstring), else None."""
    names = {p.name for p in tok_dir.iterdir()} if tok_dir.is_dir() else set()
    if "tokenizer.json" not in names or "tokenizer_config.json" not in names or names - FILES:
        return None
    # A run asks several times (import, facts, engine): parse the files once while they stay the same.
    stamp = tuple((n, st.st_size, st.st_mtime_ns) for n in sorted(names) for st in [(tok_dir / n).stat()])
    return _plain(str(tok_dir.resolve()), stamp)


@functools.lru_cache(maxsize=8)
def _plain(directory: str, stamp: tuple) -> Plain | None:
    tok_dir = Path(directory)
    config = _json(tok_dir / "tokenizer_config.json")
    if not isinstance(config, dict) or set(config) - _KEYS or config.get("tokenizer_class") not in _CLASSES:
        return None
    if "split_special_tokens" in config and not isinstance(config["split_special_tokens"], bool):
        return None
    tokens = {k: config[k] for k in _TOKEN_KEYS if config.get(k) is not None}
    if not all(isinstance(v, str) for v in tokens.values()):
        return None  # an AddedToken dict: lstrip/rstrip settings transformers would apply
    try:
        from tokenizers import Tokenizer

        backend = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    except Exception:  # not ours to diagnose: transformers' loader says what is wrong
        return None
    special = {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
    if any(t not in special for t in tokens.values()):
        return None  # TokenizersBackend would add it on load: another vocabulary
    vocab = backend.get_vocab(with_added_tokens=True)
    if len(vocab) > _PATCHED_ABOVE and backend.pre_tokenizer is not None:
        return None
    size = max(backend.get_vocab_size(with_added_tokens=True), 1 + max(vocab.values(), default=-1))
    return Plain(vocab_size=size, split_special=bool(config.get("split_special_tokens", False)), tokens=tokens,
                 ids={k: vocab[v] for k, v in tokens.items()}, vocab=vocab)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
