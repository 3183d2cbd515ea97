"""`preprocess --tokenizer DIR` with somebody else's directory: it never runs code from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import preprocess_args
from tests.helpers import assert_clean_error, preprocess_cli


def _evil(tmp_path: Path, tokenizer_dir: Path, config_change: dict) -> tuple[Path, Path]:
    """A copy of the conftest tokenizer whose config names a module of its own; importing that
    module creates a marker file."""
    evil = tmp_path / "evil-tok"
    shutil.copytree(tokenizer_dir, evil)
    marker = tmp_path / "code-ran"
    (evil / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                  "from transformers import TokenizersBackend as EvilTokenizer\n")
    config = json.loads((evil / "tokenizer_config.json").read_text())
    config.update(config_change)
    (evil / "tokenizer_config.json").write_text(json.dumps(config))
    return evil, marker


@pytest.mark.parametrize("change, message", [
    ({"auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]}}, "custom code (auto_map)"),
    ({"tokenizer_class": "EvilTokenizer", "auto_map": {"AutoTokenizer": [None, "evil.EvilTokenizer"]}},
     "custom code (auto_map)"),
])
def test_tokenizer_naming_its_own_code_is_refused(tmp_path, slice_file, tokenizer_dir, change, message):
    evil, marker = _evil(tmp_path, tokenizer_dir, change)
    out = tmp_path / "ds"
    line = assert_clean_error(preprocess_cli(*preprocess_args(slice_file, evil, out, "-q")), 1)
    assert message in line and str(evil) in line
    assert not marker.exists()  # the module was never imported
    assert not (out / "manifest.json").exists()
    # --tokenizer-only takes the same road
    line = assert_clean_error(preprocess_cli(slice_file, "--tokenizer", evil, "--tokenizer-only",
                                             "--out", tmp_path / "tok", "-q"), 1)
    assert message in line and not marker.exists()
