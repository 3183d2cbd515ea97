"""Weights and tokenizers `train` opens from elsewhere (--init-from, RUN/final) never run code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import train_args
from tests.train_helpers import one_error_line, train_cli

EVIL = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


@pytest.fixture(scope="module")
def released(train_valid, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("rel") / "run"
    r = train_cli(*train_args(train_valid, run), "--max-steps", "3", "--warmup", "1")
    assert r.exit_code == 0, r.output
    return run / "final"


@pytest.mark.parametrize("file, key, value", [
    ("tokenizer_config.json", "auto_map", {"AutoTokenizer": ["evil.EvilTokenizer", None]}),
    ("config.json", "auto_map", {"AutoModelForCausalLM": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}),
    ("tokenizer_config.json", "tokenizer_class", "EvilTokenizer"),
])
@pytest.mark.parametrize("how", ["--init-from", "--eval-only"])
def test_a_model_directory_naming_code_is_refused_and_runs_none(train_valid, released, tmp_path, file, key, value,
                                                                how):
    evil = tmp_path / "evil_model"
    shutil.copytree(released, evil)
    marker = tmp_path / "code-ran"
    (evil / "evil.py").write_text(EVIL.format(marker=str(marker)))
    config = json.loads((evil / file).read_text())
    config[key] = value
    (evil / file).write_text(json.dumps(config))
    if how == "--init-from":
        r = train_cli(*train_args(train_valid, tmp_path / "run"), "--init-from", evil, "--max-steps", "3")
    else:
        r = train_cli("--eval-only", "--init-from", evil, "--valid", train_valid / "valid", "--block-size", "32")
    line = one_error_line(r)
    assert str(evil) in line and (key in line or "custom code" in line), line
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()
