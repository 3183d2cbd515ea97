"""Opening a tokenizer directory somebody else wrote, without ever running their code.

Every tokenizer this project loads (a dataset's `tokenizer/`, `preprocess --tokenizer DIR`,
`RUN/final`, `train --init-from`) goes through `load_tokenizer`: the directory's JSON is checked
first (no `auto_map`, no tokenizer class outside transformers' own, no file names that leave the
directory), then `AutoTokenizer` loads it with `trust_remote_code=False` and no network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from shards.errors import ShardFormatError

# Files AutoTokenizer reads from a directory, whose JSON can name code or other files.
_CONFIGS = ("tokenizer_config.json", "config.json", "special_tokens_map.json")
# transformers' generic tokenizer classes (the model-specific ones come from its own mapping).
_BASE_CLASSES = {"PreTrainedTokenizerFast", "PreTrainedTokenizer", "PreTrainedTokenizerBase", "TokenizersBackend",
                 "SentencePieceBackend", "PythonBackend"}


class UnsafeTokenizerError(ShardFormatError):
    """A tokenizer directory asks for custom code or for files outside itself."""


def _read_json(path: Path, what: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardFormatError(f"{what}: {path.name} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ShardFormatError(f"{what}: {path.name} is not a JSON object")
    return data


def check_inert(directory: str | os.PathLike[str], what: str) -> None:
    """Refuse a tokenizer directory that would make transformers import code or read elsewhere.

    `what` names the directory in messages (e.g. "--tokenizer tok/" or "ds/tokenizer").
    Needs no transformers import unless the config names a tokenizer class to look up.
    """
    directory = Path(directory)
    configs = {name: _read_json(directory / name, what) for name in _CONFIGS}
    for name, data in configs.items():
        if data is None:
            continue
        if "auto_map" in data:
            raise UnsafeTokenizerError(
                f"{what}: {name} names custom code (auto_map); refusing to load it: this tool never runs code "
                "from a tokenizer or model directory (use a tokenizer made of transformers' own classes)")
        for key, value in data.items():
            if (key.endswith("_file") or key.endswith("_files")) and _leaves(value):
                raise UnsafeTokenizerError(f"{what}: {name} key {key!r} names a file outside the directory "
                                           f"({value!r}); refusing to read it")
    tok_class = (configs["tokenizer_config.json"] or {}).get("tokenizer_class")
    if tok_class is not None and not _is_transformers_class(tok_class):
        raise UnsafeTokenizerError(
            f"{what}: tokenizer_config.json asks for tokenizer_class {tok_class!r}, which is not one of "
            "transformers' own tokenizer classes; refusing to load it")


def _leaves(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, str) and v and (os.path.isabs(v) or ".." in Path(v).parts or "/" in v or "\\" in v):
            return True
    return False


def _is_transformers_class(name: Any) -> bool:
    if not isinstance(name, str):
        return False
    base = name[:-4] if name.endswith("Fast") else name
    if name in _BASE_CLASSES or base in _BASE_CLASSES:
        return True
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    known = {c for c in TOKENIZER_MAPPING_NAMES.values() if isinstance(c, str)}
    known |= {c for v in TOKENIZER_MAPPING_NAMES.values() if isinstance(v, tuple) for c in v if c}
    return name in known or base in known


def load_tokenizer(directory: str | os.PathLike[str], what: str):
    """`AutoTokenizer.from_pretrained(directory)`, checked inert first, offline, no remote code."""
    check_inert(directory, what)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:  # transformers' messages span lines: keep the first
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ShardFormatError(f"{what}: cannot load the tokenizer ({first})") from None
