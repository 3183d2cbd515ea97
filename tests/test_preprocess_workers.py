"""Determinism: the bytes do not depend on --workers or batching; --valid-fraction picks documents
by a hash of their text, whatever the order of the inputs."""

from __future__ import annotations

import hashlib
import random

import pytest

from preprocess import encoding
from preprocess.split import in_valid
from tests.conftest import preprocess_args
from tests.helpers import documents, preprocess_cli, tree_bytes, write_lines


def test_workers_and_batching_do_not_change_the_bytes(monkeypatch, tmp_path, corpus_lines):
    """Trains the tokenizer too (--vocab-size): it must not depend on the worker count either."""
    corpus = write_lines(tmp_path / "corpus.txt", corpus_lines[:1500])
    args = [corpus, "--vocab-size", 1000, "--character-coverage", 0.98, "--shard-tokens", 5000, "-q"]
    trees = {}
    for workers in (0, 1, 3):
        if workers:
            monkeypatch.setattr(encoding, "BATCH_BYTES", 32 << 10)  # ~20 batches, finishing out of order
        out = tmp_path / f"w{workers}"
        r = preprocess_cli(*args, "--workers", workers, "--out", out)
        assert r.exit_code == 0, r.output
        trees[workers] = tree_bytes(out)
    assert len([f for f in trees[0] if f.startswith("shard_")]) > 10
    assert trees[0] == trees[1] == trees[3]

    # The tokenizer preprocess trained is the source of truth for these ids, and adds no specials.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tmp_path / "w0" / "tokenizer"))
    for line, ids in zip(corpus_lines[:1500], documents(tmp_path / "w0"), strict=True):
        assert tok.encode(line) == tok.encode(line, add_special_tokens=False) == list(ids)
        assert tok.decode(list(ids)) == line


def _text(doc: tuple[int, ...], tok) -> str:
    return tok.decode(list(doc))


def test_valid_fraction_split(tmp_path, slice_file, tokenizer_dir, corpus_lines):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    lines = corpus_lines[:300]
    assert len(set(lines)) == len(lines)  # so documents can be compared as sets

    whole = tmp_path / "whole"
    assert preprocess_cli(*preprocess_args(slice_file, tokenizer_dir, whole, "-q")).exit_code == 0
    a = tmp_path / "a"
    assert preprocess_cli(*preprocess_args(slice_file, tokenizer_dir, a, "--valid-fraction", 0.25,
                                           "--shard-tokens", 2000, "-q")).exit_code == 0
    assert sorted(p.name for p in a.iterdir()) == ["train", "valid"]
    train, valid = set(documents(a / "train")), set(documents(a / "valid"))
    assert not train & valid
    assert train | valid == set(documents(whole))
    assert 40 < len(valid) < 110  # about a quarter of 300
    # Chosen by the hash of the text, document by document.
    for doc in train | valid:
        digest = hashlib.blake2b(_text(doc, tok).encode("utf-8"), digest_size=8).digest()
        assert in_valid(digest, 0.25) == (doc in valid)

    b = tmp_path / "b"
    r = preprocess_cli(*preprocess_args(slice_file, tokenizer_dir, b, "--valid-fraction", 0.25,
                                        "--shard-tokens", 2000, "-q", "--workers", 2))
    assert r.exit_code == 0, r.output
    assert tree_bytes(b) == tree_bytes(a)

    shuffled = lines[:]
    random.Random(0).shuffle(shuffled)
    c = tmp_path / "c"
    r = preprocess_cli(*preprocess_args(write_lines(tmp_path / "shuffled.txt", shuffled), tokenizer_dir, c,
                                        "--valid-fraction", 0.25, "-q"))
    assert r.exit_code == 0, r.output
    assert set(documents(c / "train")) == train and set(documents(c / "valid")) == valid


def test_a_failed_tokenizer_load_does_not_stay_with_the_process(tmp_path, slice_file, tokenizer_dir):
    """--workers 0 loads the tokenizer in this process: a load that failed once (here a missing
    backend file) must not fail every later run in the same process with the old message."""
    from preprocess import worker
    from preprocess.config import PreprocessConfig
    from preprocess.engines import EngineSpec
    from preprocess.errors import TokenizerError
    from preprocess.pipeline import run

    worker.init(EngineSpec("tokenizers", str(tokenizer_dir), str(tmp_path / "missing.json")), None, in_worker=False)
    with pytest.raises(TokenizerError, match="could not load the tokenizer"):
        worker.process(None)
    cfg = PreprocessConfig(inputs=(str(slice_file),), out=tmp_path / "ds", tokenizer=str(tokenizer_dir), workers=0,
                           quiet=True)
    run(cfg, say=lambda s: None)
    assert len(documents(tmp_path / "ds")) == 300


def test_valid_fraction_split_of_documents_cut_into_pieces(monkeypatch, tmp_path, tokenizer_dir, corpus_lines):
    """Documents over --max-doc-bytes go to the side the hash of their whole text says, both when
    a worker cuts one inside its block and when one arrives as piece blocks (a line longer than
    a read), joined in the main process, which hashes the pieces as they come and keeps none
    of their text."""
    from transformers import AutoTokenizer

    from preprocess.blocks import split_long
    from preprocess.encoding import Encoding

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    rng = random.Random(1)
    lines = []
    for i in range(60):
        n = rng.choice([1, 1, 20, 400])  # a line; a few kB (cut in a block); ~150 kB (piece blocks)
        lines.append(" ".join(corpus_lines[(i * 7 + k) % len(corpus_lines)] for k in range(n)))
    corpus = write_lines(tmp_path / "c.txt", lines)
    held = []
    joined = Encoding._joined
    monkeypatch.setattr(Encoding, "_joined", lambda self: held.extend(p.piece_text for p in self.carry) or joined(self))
    out = tmp_path / "ds"
    r = preprocess_cli(*preprocess_args(corpus, tokenizer_dir, out, "--valid-fraction", 0.5,
                                        "--max-doc-bytes", 4096, "-q"))
    assert r.exit_code == 0, r.output
    assert len(held) > 60 and held == [None] * len(held)  # piece blocks arrived; no text was kept

    def ids(line: str) -> tuple[int, ...]:
        return tuple(i for piece in split_long(line.encode(), 4096) for i in tok.encode(piece.decode()))

    side = {line: in_valid(hashlib.blake2b(line.encode(), digest_size=8).digest(), 0.5) for line in lines}
    assert documents(out / "valid") == [ids(line) for line in lines if side[line]]
    assert documents(out / "train") == [ids(line) for line in lines if not side[line]]
    assert sum(side.values()) > 10 and sum(not v for v in side.values()) > 10
