"""Shared fixtures: the bundled sample corpus, a tiny SentencePiece tokenizer, tiny datasets."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

CORPUS_DIR = Path(__file__).resolve().parents[1] / "quickstart" / "data" / "ja-libreoffice-help"


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def corpus_file() -> Path:
    return CORPUS_DIR / "train.txt"


@pytest.fixture(scope="session")
def corpus_lines(corpus_file: Path) -> list[str]:
    return corpus_file.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, corpus_lines) -> Path:
    """A 1000-token SentencePiece unigram tokenizer trained on part of the sample corpus (~1 s).

    Japanese needs ~730 single-character pieces at 98% coverage, so this is about the smallest.
    """
    from preprocess.tokenizer import train_sentencepiece

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_sentencepiece(corpus_lines[:1500], 1000, out, threads=1, character_coverage=0.98)
    return out


def write_dataset(path: Path, docs: Sequence[Sequence[int]], *, vocab_size: int, shard_tokens: int,
                  tokenizer_dir: Path, eos_id: int | None = None):
    """A complete dataset directory holding `docs` in order (the ids as given)."""
    from shards import DatasetWriter

    shutil.copytree(tokenizer_dir, path / "tokenizer")
    w = DatasetWriter(path, vocab_size=vocab_size, shard_tokens=shard_tokens)
    for start in range(0, len(docs), 7):  # several add() calls, as a pipeline makes them
        chunk = docs[start:start + 7]
        w.add(np.concatenate([np.asarray(d, dtype=np.int64) for d in chunk]), [len(d) for d in chunk])
    return w.finish(eos_id=eos_id, eos_separates_documents=eos_id is not None,
                    tokenizer={"kind": "test", "source": str(tokenizer_dir)}, settings={}, inputs=[],
                    stats={}, source_bytes=0, tool_version="test")


@pytest.fixture
def make_dataset(tmp_path, tokenizer_dir):
    """make_dataset(docs, vocab_size=..., shard_tokens=..., name=...) -> Path of a complete dataset."""
    counter = iter(range(1_000_000))

    def make(docs, *, vocab_size: int = 1000, shard_tokens: int = 50, name: str | None = None,
             eos_id: int | None = None) -> Path:
        path = tmp_path / (name or f"ds{next(counter)}")
        write_dataset(path, docs, vocab_size=vocab_size, shard_tokens=shard_tokens,
                      tokenizer_dir=tokenizer_dir, eos_id=eos_id)
        return path

    return make


def random_docs(rng: np.random.Generator, n_docs: int, vocab_size: int, max_len: int = 40) -> list[np.ndarray]:
    return [rng.integers(0, vocab_size, size=int(rng.integers(1, max_len + 1))) for _ in range(n_docs)]


@pytest.fixture(scope="session")
def train_valid(tmp_path_factory, corpus_lines, tokenizer_dir) -> Path:
    """DIR/train and DIR/valid from 1,200 lines of the sample corpus (EOS after each document)."""
    from preprocess.config import PreprocessConfig
    from preprocess.pipeline import run

    root = tmp_path_factory.mktemp("tv")
    text = root / "corpus.txt"
    text.write_text("\n".join(corpus_lines[:1200]) + "\n", encoding="utf-8")
    run(PreprocessConfig(inputs=(str(text),), out=root / "ds", tokenizer=str(tokenizer_dir), workers=0,
                         valid_fraction=0.1, shard_tokens=20_000, quiet=True), say=lambda s: None)
    return root / "ds"


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    """`train` flags for a gpt2-tiny run that takes a few seconds on a CPU."""
    return ["--data", str(data / "train"), "--valid", str(data / "valid"), "--out", str(out),
            "--model", "gpt2-tiny", "--block-size", "32", "--batch-size", "4", "--warmup", "2",
            "--log-every", "1", "--eval-every", "5", "--eval-blocks", "16", "--workers", "0",
            "--sample-tokens", "8", "-q", *extra]


# -- preprocess runs shared by the shards/preprocess tests ------------------------------------

def preprocess_args(corpus: Path, tokenizer: Path, out: Path, *extra: object) -> list[str]:
    """The flags of the reference run on the whole sample corpus (see `sample_dataset`)."""
    return [str(a) for a in (corpus, "--tokenizer", tokenizer, "--out", out, "--shard-tokens", 20_000,
                             "--workers", 0, *extra)]


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory, corpus_file, tokenizer_dir) -> Path:
    """The whole sample corpus (4,345 lines, ~7 batches) through `preprocess` with the conftest
    tokenizer: the reference that resumed and multi-worker runs must reproduce byte for byte."""
    from click.testing import CliRunner

    from preprocess.cli import main

    out = tmp_path_factory.mktemp("sample") / "ds"
    r = CliRunner().invoke(main, preprocess_args(corpus_file, tokenizer_dir, out, "-q"))
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="session")
def slice_file(tmp_path_factory, corpus_lines) -> Path:
    """The first 300 lines of the sample corpus (~115 kB), for runs where size is not the point."""
    path = tmp_path_factory.mktemp("slice") / "slice.txt"
    path.write_text("\n".join(corpus_lines[:300]) + "\n", encoding="utf-8")
    return path
