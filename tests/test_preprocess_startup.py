"""A fast start: the worker processes never import torch or transformers, and neither does the
main process when the tokenizer is a plain directory (or is trained here). Importing
transformers costs over a second of CPU, AutoTokenizer pulls in torch (another 1.5 s); how long
the start takes is measured by benchmarks/bench_preprocess.py, not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


_HEAVY = 'json.dumps({"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules, "out": out})'


def test_worker_encoders_import_neither_torch_nor_transformers(tmp_path, tokenizer_dir):
    for engine in ("sentencepiece", "tokenizers"):
        got = _python(f"""
import json, sys
from preprocess import worker
from pathlib import Path
from preprocess.engines import EngineSpec, choose_engine, make_encoder
spec = choose_engine(Path({str(tokenizer_dir)!r}), Path({str(tmp_path)!r}))
assert spec.engine == "sentencepiece"
if {engine!r} == "tokenizers":
    spec = EngineSpec("tokenizers", {str(tokenizer_dir)!r})
out = make_encoder(spec)(["テスト < </s>", "dddd"])
print({_HEAVY})""")
        assert got["out"] and not got["torch"] and not got["transformers"], (engine, got)


def test_preprocess_with_a_tokenizer_directory_imports_neither(tmp_path, tokenizer_dir, slice_file):
    for args in (["--tokenizer", str(tokenizer_dir)], ["--vocab-size", "1000", "--character-coverage", "0.98"]):
        out = tmp_path / args[0].strip("-")
        got = _python(f"""
import json, sys
from preprocess.cli import main
try:
    main([{str(slice_file)!r}, *{args!r}, "--out", {str(out)!r}, "--workers", "0", "-q"])
except SystemExit as e:
    assert not e.code, e.code
out = json.load(open({str(out / "manifest.json")!r}))["num_documents"]
print({_HEAVY})""")
        assert got["out"] == 300 and not got["torch"] and not got["transformers"], (args, got)
