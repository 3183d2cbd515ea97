"""Opening a tokenizer directory somebody else wrote, without ever running their code.

Every tokenizer this project loads (a dataset's `tokenizer/`, `preprocess --tokenizer DIR`,
`RUN/final`, `train --init-from`) goes through `load_tokenizer`. Before transformers sees the
directory, `check_inert` refuses:

- a directory holding a symlink that leaves it, or anything but plain files and directories
  (so only the tokenizer's own files can be read, and nothing can hang the reader);
- `auto_map` in any of its JSON configs (the hook through which transformers imports a module
  shipped in the directory);
- a `tokenizer_class` (in tokenizer_config.json or config.json) that is not one of
  transformers' own tokenizer classes: transformers resolves that name with getattr on its
  whole package, so a name like `AutoModel` would load a model instead;
- a `*_file` / `*_files` value, at any depth, naming a path instead of a plain file name.

Then `AutoTokenizer` loads it with `trust_remote_code=False` and `local_files_only=True`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shards.confine import ConfinementError, check_tree, name_problem
from shards.errors import ShardFormatError

# JSON files AutoTokenizer (and AutoConfig, which it consults) read from a directory. tokenizer.json
# is not among them: the `tokenizers` library parses it in Rust and it cannot name code.
_CONFIGS = ("tokenizer_config.json", "config.json", "special_tokens_map.json", "added_tokens.json",
            "chat_template.json", "processor_config.json", "preprocessor_config.json")
_CLASS_KEYS = ("tokenizer_config.json", "config.json")  # where transformers looks up tokenizer_class
# transformers' generic tokenizer classes (the model-specific ones come from its own mapping).
_BASE_CLASSES = {"PreTrainedTokenizerFast", "PreTrainedTokenizer", "PreTrainedTokenizerBase", "TokenizersBackend",
                 "SentencePieceBackend", "PythonBackend"}
_MAX_CONFIG_BYTES = 64 << 20  # a config is a few kB; bigger is not a tokenizer config


class UnsafeTokenizerError(ShardFormatError):
    """A tokenizer directory asks for custom code or for files outside itself."""


def _read_json(path: Path, what: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise ShardFormatError(f"{what}: {path.name} is over {_MAX_CONFIG_BYTES >> 20} MiB; not a tokenizer config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ShardFormatError(f"{what}: {path.name} is not valid JSON ({str(e)[:80]})") from None
    if not isinstance(data, dict):
        raise ShardFormatError(f"{what}: {path.name} is not a JSON object")
    return data


def check_inert(directory: str | os.PathLike[str], what: str) -> None:
    """Refuse a tokenizer directory that would make transformers import code or read elsewhere.

    `what` names the directory in messages (e.g. "--tokenizer tok/" or "ds/tokenizer"). Symlinks
    may resolve only inside the directory (so a Hugging Face cache snapshot, whose files link
    into the repository's blobs/, is refused: copy it, e.g. with `save_pretrained`). Needs no
    transformers import unless a config names a tokenizer class to look up.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ShardFormatError(f"{what}: not a tokenizer directory")
    try:
        check_tree(directory, "the tokenizer directory", top_within=directory)
    except ConfinementError as e:  # its message names the path already
        raise UnsafeTokenizerError(str(e)) from None
    configs = {name: _read_json(directory / name, what) for name in _CONFIGS}
    for name, data in configs.items():
        if data is None:
            continue
        if "auto_map" in data:
            raise UnsafeTokenizerError(
                f"{what}: {name} names custom code (auto_map); refusing to load it: this tool never runs code "
                "from a tokenizer or model directory (use a tokenizer made of transformers' own classes)")
        for key, value in _file_keys(data):
            if _leaves(value):
                raise UnsafeTokenizerError(f"{what}: {name} key {key!r} names a file outside the directory "
                                           f"({value!r:.80}); refusing to read it")
    for name in _CLASS_KEYS:
        tok_class = (configs[name] or {}).get("tokenizer_class")
        if tok_class is not None and not _is_transformers_class(tok_class):
            raise UnsafeTokenizerError(
                f"{what}: {name} asks for tokenizer_class {tok_class!r:.60}, which is not one of "
                "transformers' own tokenizer classes; refusing to load it")


def _file_keys(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(key path, value) of every `*_file` / `*_files` key, however deeply nested."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(key, str) and key.endswith(("_file", "_files")):
            yield path, value
        if isinstance(value, (dict, list)):
            yield from _file_keys(value, path)


def _leaves(value: Any) -> bool:
    """True when a file key's value is a path rather than a plain name inside the directory."""
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and v and name_problem(v) is not None for v in values)


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
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # their messages span lines: keep the first
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ShardFormatError(f"{what}: cannot load the tokenizer ({first[:200]})") from None
