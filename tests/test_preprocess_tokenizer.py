"""DIR/tokenizer is the single source of truth for the ids; where tokenizers come from; EOS rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shards import Dataset
from tests.conftest import preprocess_args
from tests.helpers import assert_clean_error, documents, preprocess_cli, stream, write_lines

ROOT = Path(__file__).resolve().parents[1]


def test_shards_hold_what_autotokenizer_says(sample_dataset, corpus_lines):
    """For every document of the real sample corpus: the saved tokenizer gives exactly its ids."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(sample_dataset / "tokenizer"))
    ds = Dataset(sample_dataset)
    assert ds.num_documents == len(corpus_lines) == 4345
    assert ds.eos_id == tok.eos_token_id and ds.manifest.eos_separates_documents
    for line, ids in zip(corpus_lines, documents(sample_dataset), strict=True):
        assert tok.encode(line, add_special_tokens=False) == list(ids)
        assert tok.encode(line) == list(ids)  # a tokenizer this project trained adds no specials
        assert tok.decode(list(ids)) == line


def test_no_eos_is_the_plain_concatenation(tmp_path, slice_file, tokenizer_dir, corpus_lines):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    out = tmp_path / "ds"
    r = preprocess_cli(*preprocess_args(slice_file, tokenizer_dir, out, "--no-eos", "--shard-tokens", 3000, "-q"))
    assert r.exit_code == 0, r.output
    want = [i for line in corpus_lines[:300] for i in tok.encode(line)]
    assert stream(out).tolist() == want
    m = Dataset(out).manifest
    assert not m.eos_separates_documents and m.num_documents == 300


@pytest.fixture(scope="module")
def no_eos_tokenizer(tmp_path_factory, corpus_lines) -> Path:
    """A byte-level BPE tokenizer trained here with `tokenizers`: no EOS, one special token [SEP]."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["[SEP]"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(corpus_lines[:300], trainer)
    out = tmp_path_factory.mktemp("bpe") / "bpe"
    PreTrainedTokenizerFast(tokenizer_object=backend).save_pretrained(str(out))
    return out


def test_tokenizer_without_eos(tmp_path, slice_file, no_eos_tokenizer, corpus_lines):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(no_eos_tokenizer))
    assert tok.eos_token is None
    out = tmp_path / "ds"
    line = assert_clean_error(preprocess_cli(*preprocess_args(slice_file, no_eos_tokenizer, out, "-q")), 2)
    assert "has no EOS token" in line and "--eos-token" in line and "--no-eos" in line
    assert not (out / "manifest.json").exists()

    # Following the advice, into the same --out, works.
    r = preprocess_cli(*preprocess_args(slice_file, no_eos_tokenizer, out, "--eos-token", "[SEP]", "-q"))
    assert r.exit_code == 0, r.output
    sep = tok.convert_tokens_to_ids("[SEP]")
    ds = Dataset(out)
    assert ds.eos_id == sep and ds.manifest.eos_separates_documents
    for line_text, ids in zip(corpus_lines[:300], documents(out), strict=True):
        assert tok.encode(line_text, add_special_tokens=False) == list(ids)
        assert tok.decode(list(ids)) == line_text

    r = preprocess_cli(*preprocess_args(slice_file, no_eos_tokenizer, tmp_path / "n", "--no-eos", "-q"))
    assert r.exit_code == 0, r.output
    assert stream(tmp_path / "n").tolist() == [i for t in corpus_lines[:300] for i in tok.encode(t)]


def test_eos_token_must_be_in_the_vocabulary(tmp_path, slice_file, no_eos_tokenizer):
    args = preprocess_args(slice_file, no_eos_tokenizer, tmp_path / "ds", "--eos-token", "<|nope|>", "-q")
    line = assert_clean_error(preprocess_cli(*args), 2)
    assert "--eos-token '<|nope|>' is not a token" in line


def test_no_eos_and_eos_token_contradict(tmp_path, slice_file, tokenizer_dir):
    args = preprocess_args(slice_file, tokenizer_dir, tmp_path / "ds", "--eos-token", "</s>", "--no-eos")
    assert "contradict" in assert_clean_error(preprocess_cli(*args), 2)
    assert not (tmp_path / "ds").exists()


def test_sentencepiece_model_file_and_directory_agree(tmp_path, slice_file, tokenizer_dir):
    from_dir, from_model = tmp_path / "dir", tmp_path / "model"
    r = preprocess_cli(*preprocess_args(slice_file, tokenizer_dir, from_dir, "-q"))
    assert r.exit_code == 0, r.output
    r = preprocess_cli(*preprocess_args(slice_file, tokenizer_dir / "tokenizer.model", from_model, "-q"))
    assert r.exit_code == 0, r.output
    assert (from_model / "tokenizer" / "tokenizer.model").read_bytes() == \
        (tokenizer_dir / "tokenizer.model").read_bytes()
    assert stream(from_model).tolist() == stream(from_dir).tolist()
    kinds = [json.loads((d / "manifest.json").read_text())["tokenizer"]["kind"] for d in (from_dir, from_model)]
    assert kinds == ["transformers", "sentencepiece"]


def test_hub_name_fails_fast_offline(tmp_path, slice_file):
    """HF_HUB_OFFLINE=1 (conftest): no retries for a minute, a message that points to a local path."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "preprocess", str(slice_file), "--tokenizer", "gpt2",
                        "--out", str(tmp_path / "ds"), "-q"], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=60)  # the timeout only guards against a hang
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --tokenizer gpt2:")
    assert "local tokenizer directory" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_unreachable_hub_fails_with_a_hint(monkeypatch, tmp_path, slice_file):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    line = assert_clean_error(preprocess_cli(slice_file, "--tokenizer", "someorg/somemodel",
                                             "--out", tmp_path / "ds", "-q"), 2)
    assert "cannot be reached" in line and "local tokenizer directory" in line


def test_a_hub_tokenizer_is_used_as_saved(monkeypatch, tmp_path, slice_file, tokenizer_dir, corpus_lines):
    """What a hub load gives in memory need not be what it saves (transformers changes a tokenizer
    on load): the facts and the engine come from DIR/tokenizer, the directory that ships. Here
    the saved copy differs on purpose: another EOS, and special tokens in text matched."""
    from transformers import AutoTokenizer

    from preprocess import tokenizer as tk

    hub = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    save = hub.save_pretrained

    def save_differently(directory, **kwargs):
        save(directory, **kwargs)
        config_path = Path(directory) / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config.update(eos_token="<pad>", split_special_tokens=False)
        config_path.write_text(json.dumps(config))

    monkeypatch.setattr(hub, "save_pretrained", save_differently)
    monkeypatch.setattr(tk, "_load_hub", lambda name: hub)
    lines = corpus_lines[:20] + ["text that spells </s> and <pad> as text"]
    corpus = write_lines(tmp_path / "c.txt", lines)
    out = tmp_path / "ds"
    r = preprocess_cli(corpus, "--tokenizer", "someorg/sometok", "--out", out, "--workers", 0, "-q")
    assert r.exit_code == 0, r.output
    saved = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    assert (saved.eos_token, saved.split_special_tokens) == ("<pad>", False)
    ds = Dataset(out)
    assert ds.eos_id == saved.eos_token_id != hub.eos_token_id
    assert documents(out) == [tuple(saved.encode(line, add_special_tokens=False)) for line in lines]
    assert saved.eos_token_id in documents(out)[-1]  # "<pad>" in the text is the special token


def test_vocabulary_with_holes_keeps_every_id(tmp_path):
    """len(tokenizer) is 4 but an id is 9: the dataset's vocab_size must cover it (no truncation)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "</s>": 2, "b": 9}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>").save_pretrained(
        str(tmp_path / "tok"))
    (tmp_path / "in.txt").write_text("a b a\nb b\n")
    r = preprocess_cli(tmp_path / "in.txt", "--tokenizer", tmp_path / "tok", "--out", tmp_path / "ds", "-q")
    assert r.exit_code == 0, r.output
    ds = Dataset(tmp_path / "ds")
    assert ds.vocab_size == 10
    assert ds.read(0, ds.num_tokens).tolist() == [1, 9, 1, 2, 9, 9, 2]


def test_to_array_inserts_eos_and_refuses_foreign_ids():
    import numpy as np

    from preprocess.engines import to_array
    from preprocess.errors import TokenizerError

    # Pieces [5, 6] (ends a document), [] (ends an empty one), [7] (continues), [8] (ends it).
    tokens, lengths = to_array([[5, 6], [], [7], [8]], 2, [True, True, False, True], np.dtype("<u2"), 10)
    assert tokens.tolist() == [5, 6, 2, 2, 7, 8, 2] and lengths.tolist() == [3, 1, 1, 2]
    assert tokens.dtype == np.uint16
    tokens, lengths = to_array([[5, 6], [7]], None, [True, True], np.dtype("<u2"), 10)
    assert tokens.tolist() == [5, 6, 7] and lengths.tolist() == [2, 1]
    with pytest.raises(TokenizerError, match="id 10"):
        to_array([[1, 10]], 2, [True], np.dtype("<u2"), 10)
    with pytest.raises(TokenizerError, match="id -1"):
        to_array([[1, -1]], 2, [True], np.dtype("<u2"), 10)


@pytest.mark.parametrize("bad", [70_000, -1, 1 << 40])
def test_to_array_refuses_an_id_that_numpy_would_wrap(monkeypatch, bad):
    """numpy 1.26 (which pyproject allows) narrows 70000 to 4464 in uint16 without a word, an id
    inside the vocabulary: the ids are checked before narrowing, whatever numpy does. Here
    np.fromiter wraps as 1.26's does."""
    import numpy as np

    from preprocess import engines
    from preprocess.errors import TokenizerError

    real = np.fromiter
    wrapping = lambda it, dtype, count=-1: np.array(list(it), dtype=np.int64).astype(dtype)  # noqa: E731
    monkeypatch.setattr(np, "fromiter", lambda it, dtype, count=-1: (wrapping if np.dtype(dtype) == np.uint16
                                                                     else real)(it, dtype, count))
    assert np.fromiter(iter([1, 70_000]), np.dtype("<u2"), 2).tolist() == [1, 4464]  # wraps, as on 1.26
    with pytest.raises(TokenizerError, match=f"id {bad}, outside its vocabulary of 65536"):
        engines.to_array([[1, 2], [bad]], None, [True, True], np.dtype("<u2"), 65536)


TRICKY = ["前</s>後", "<s>とか<pad>", "<unk>", "<0x41> and <0xE3><0x81><0x82>", "a < b <", "<<<", " <", "k>"]


def test_special_token_text_is_just_text(tmp_path, tokenizer_dir):
    """A document spelling "</s>" must not inject a document boundary, nor "<0x41>" decode as "A"."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    # The hard case: characters of "</s>" and "<unk>" without a piece of their own (bytes instead).
    assert ">" not in tok.get_vocab() and "k" not in tok.get_vocab(), \
        "the conftest tokenizer now has these pieces: choose TRICKY strings with characters it lacks"
    write_lines(tmp_path / "in.txt", TRICKY)
    out = tmp_path / "ds"
    r = preprocess_cli(*preprocess_args(tmp_path / "in.txt", tokenizer_dir, out, "-q"))
    assert r.exit_code == 0, r.output
    docs = documents(out)
    assert len(docs) == len(TRICKY)
    for text, ids in zip(TRICKY, docs):
        assert not {0, 1, 2, 3} & set(ids), text  # no <unk>, <s>, </s> or <pad> from text
        assert tok.decode(list(ids)) == text


# Strings where tokenizers tend to disagree: whitespace runs, tabs, CJK, emoji, combining
# marks, full/half width, control characters, byte-token and special-token look-alikes.
PROBES = ("", " ", "  two  spaces ", " lead", "trail ", "tab\there", "a\nb\r\nc\rd", "\u3000全角 空白",
          "😀 𠮷 ☃", "e\u0301 \u00e9", "ＡＢＣ１２３ ｶﾀｶﾅ", "\x01\x02\x7f", "\ufffd", "<0x41> <unk> <s> </s> <pad>",
          "<|endoftext|> [CLS] [SEP] <|im_start|>", "123456789 3.14", "Hello, World! こんにちは、世界。",
          "\u2581\u2581x", "a" * 300)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_trained_tokenizer_round_trips_and_adds_no_specials(tmp_path, corpus_lines, model_type):
    """decode(encode(text)) == text, no special token from text; a unigram model's shipped
    tokenizer.model gives the very ids too (preprocess.spm_exact says why)."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    from preprocess.tokenizer import train_sentencepiece

    train_sentencepiece(corpus_lines[:1500], 1000, tmp_path / "tok", model_type=model_type, character_coverage=0.98)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tok" / "tokenizer.model"))
    for text in [*PROBES, *TRICKY, *corpus_lines[:1500]]:
        ids = tok.encode(text)
        assert ids == tok.encode(text, add_special_tokens=False)
        if model_type == "unigram" and "<" not in text:
            assert sp.encode(text) == ids, text
        if "\u2581" not in text:  # a literal "▁" decodes as a space, in SentencePiece too
            assert tok.decode(ids) == text
        assert not {0, 1, 2, 3} & set(ids), text


def test_tokenizer_only(tmp_path, slice_file, tokenizer_dir):
    from transformers import AutoTokenizer

    out = tmp_path / "tok"
    r = preprocess_cli(slice_file, "--tokenizer", tokenizer_dir / "tokenizer.model", "--tokenizer-only", "--out", out)
    assert r.exit_code == 0, r.output
    assert AutoTokenizer.from_pretrained(str(out)).encode("テスト") == \
        AutoTokenizer.from_pretrained(str(tokenizer_dir)).encode("テスト")
    line = assert_clean_error(preprocess_cli(slice_file, "--tokenizer", tokenizer_dir, "--tokenizer-only",
                                             "--out", out, "-q"), 2)
    assert "not empty" in line and "--overwrite" in line
    r = preprocess_cli(slice_file, "--tokenizer", tokenizer_dir, "--tokenizer-only", "--out", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # no temporary directory left

    # --overwrite never deletes a directory that holds something else than a tokenizer.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "corpus.txt").write_text("precious")
    line = assert_clean_error(preprocess_cli(slice_file, "--tokenizer", tokenizer_dir, "--tokenizer-only",
                                             "--out", tmp_path / "mine", "--overwrite", "-q"), 2)
    assert "holds no tokenizer" in line
    assert (tmp_path / "mine" / "corpus.txt").read_text() == "precious"

    # A failed build leaves the old tokenizer in place and no temporary directory.
    before = sorted(p.name for p in out.iterdir())
    assert_clean_error(preprocess_cli(slice_file, "--tokenizer", tmp_path / "none", "--tokenizer-only",
                                      "--out", out, "--overwrite", "-q"), 2)
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "tok"]
