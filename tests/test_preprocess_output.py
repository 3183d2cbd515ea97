"""What preprocess tells a person: that it is training and for about how long, which speed is
which, what it ignored (the resumed run's messages are in test_preprocess_resume)."""

from __future__ import annotations

import re

from preprocess import pipeline
from tests.helpers import preprocess_cli, write_lines


def test_training_says_what_it_does_and_keeps_saying_it(monkeypatch, tmp_path, corpus_lines):
    monkeypatch.setattr(pipeline, "_HEARTBEAT_SECONDS", 0.05)  # training takes about a second here
    corpus = write_lines(tmp_path / "corpus.txt", corpus_lines[:1500])
    r = preprocess_cli(corpus, "--vocab-size", 1000, "--character-coverage", 0.98, "--out", tmp_path / "ds",
                       "--workers", 0)
    assert r.exit_code == 0, r.output
    err = r.stderr.splitlines()
    assert re.fullmatch(r"training a unigram SentencePiece tokenizer \(vocab 1,000\) on .*B of the inputs; "
                        r"this may take about \d+:\d\d .*", err[0]), err[0]
    assert any(line.startswith("  still training the tokenizer: ") for line in err), err
    assert any(re.fullmatch(r"  tokenizer trained in \d+:\d\d", line) for line in err), err
    assert "encoding with SentencePiece (the same ids as AutoTokenizer, by construction)" in r.stderr


def test_summary_names_each_speed(tmp_path, slice_file, tokenizer_dir):
    r = preprocess_cli(slice_file, "--tokenizer", tokenizer_dir, "--out", tmp_path / "ds", "--workers", 1)
    assert r.exit_code == 0, r.output
    speed = [line for line in r.stdout.splitlines() if line.startswith("  speed: ")]
    assert len(speed) == 1, r.stdout
    assert re.fullmatch(r"  speed: \S+ tokens/s over the whole run; \S+ tokens/s while encoding \(1 worker process; "
                        r"from the first block back to the last written, without start-up\)", speed[0]), speed[0]
    assert "(resumed" not in r.stdout


def test_ignored_files_are_named_by_the_formats_read(tmp_path, slice_file, tokenizer_dir):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_bytes(slice_file.read_bytes())
    (data / "notes.md").write_text("not read")
    r = preprocess_cli(data, "--tokenizer", tokenizer_dir, "--out", tmp_path / "ds", "--workers", 0)
    assert r.exit_code == 0, r.output
    note = [line for line in r.stderr.splitlines() if line.startswith("note: ignored")]
    assert note == ["note: ignored 1 file(s) in the input directories that are not "
                    ".txt, .jsonl (plain or .gz/.bz2/.xz/.zst), .parquet, .arrow"]
