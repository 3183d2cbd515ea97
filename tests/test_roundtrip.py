"""`shards verify --tokenizer-roundtrip`: each document's ids are what the dataset's own
tokenizer gives its text; documents that differ are named; honest exceptions are counted apart."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from shards import Dataset, load_manifest
from shards.layout import NPY_HEADER_BYTES
from shards.roundtrip import _batches, roundtrip
from tests.helpers import preprocess_cli, shards_cli, write_lines

EOS = 2  # "</s>" in the conftest tokenizer


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def _encode(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def _respelled(tok, text: str) -> tuple[list[int], list[int], int]:
    """(canonical ids, the same text spelled with one piece split in two, where) for `text`:
    valid ids, the same decoded text, but not what the tokenizer gives it."""
    vocab = tok.get_vocab()
    ids = _encode(tok, text)
    for k, i in enumerate(ids):
        piece = tok.convert_ids_to_tokens(i)
        for cut in range(1, len(piece)):
            a, b = piece[:cut], piece[cut:]
            if a in vocab and b in vocab:
                other = ids[:k] + [vocab[a], vocab[b]] + ids[k + 1:]
                if tok.decode(other) == tok.decode(ids) == text:
                    return ids, other, k
    raise AssertionError(f"no piece of {text!r} splits into two others")


@pytest.fixture
def lines(corpus_lines) -> list[str]:
    return corpus_lines[200:214]


def test_a_dataset_written_by_preprocess_passes(train_valid):
    for side in ("train", "valid"):
        path = train_valid / side
        r = shards_cli("verify", path, "--tokenizer-roundtrip")
        assert r.exit_code == 0, r.output
        n = load_manifest(path).num_documents
        assert r.stdout.strip().endswith(f"; every document re-encodes to its ids ({n:,} checked)")
        assert r.stderr == ""


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_preprocess_with_either_trained_tokenizer_and_awkward_text_passes(tmp_path, slice_file, kind):
    """Lines that decode unlike their text or near special tokens: `▁`, U+FFFD, "</s>", byte
    pieces, emoji, spaces at both ends. `▁` decodes as a space, yet encodes to the same ids."""
    awkward = ["a▁b ▁▁ c", "x \ufffd y", "spelled </s> and <0x41> and <unk>", "🙂 emoji 絵文字", "  spaced  ",
               "tab\there", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ"]
    corpus = write_lines(tmp_path / "c.txt", awkward + slice_file.read_text(encoding="utf-8").splitlines()[:150])
    out = tmp_path / "ds"
    r = preprocess_cli(corpus, "--vocab-size", 1000, "--tokenizer-type", kind, "--character-coverage", 0.98,
                       "--out", out, "--workers", 0, "--quiet")
    assert r.exit_code == 0, r.output
    report = roundtrip(out)
    assert (report.documents, report.differ, report.split, report.lossy) == (load_manifest(out).num_documents, 0, 0, 0)
    assert report.documents == len(awkward) + 150


def test_a_non_canonical_split_is_named_with_its_number(make_dataset, tok, lines, tmp_path):
    docs = [_encode(tok, line) + [EOS] for line in lines]
    canonical, respelled, k = _respelled(tok, lines[9])
    docs[9] = respelled + [EOS]
    path = make_dataset(docs, shard_tokens=100, eos_id=EOS)
    ds = Dataset(path)
    shard = next(i for i in range(len(ds.manifest.shards)) if ds.doc_starts[i] <= 9 < ds.doc_starts[i + 1])
    assert shard > 0, "the document should lie past the first shard, so its number counts earlier shards"
    assert shards_cli("verify", path).exit_code == 0  # every byte is as the manifest says
    r = shards_cli("verify", path, "--tokenizer-roundtrip")
    assert r.exit_code == 1, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 2, r.stderr
    assert err[0].startswith(f"error: {path}: document 9 ({ds.manifest.shards[shard].file}, {len(respelled)} tokens): "
                             f"ids differ from the tokenizer's re-encoding at token {k}: "
                             f"{respelled[k:k + 6]} where it gives {canonical[k:k + 6]}, text ")
    assert err[1] == (f"{path}: 1 of {len(lines)} documents differ from AutoTokenizer.from_pretrained("
                      f"{str(path / 'tokenizer')!r}).encode(text, add_special_tokens=False)")
    assert r.stdout == ""


def test_numbers_hold_across_batches_and_shards(make_dataset, tok, lines):
    docs = [_encode(tok, line) + [EOS] for line in lines]
    bad = [2, 7, 13]
    for d in bad:
        docs[d] = _respelled(tok, lines[d])[1] + [EOS]
    path = make_dataset(docs, shard_tokens=60, eos_id=EOS)
    seen = []
    for batch_tokens in (1, 17, 1 << 20):  # one document per call, a few, all of a shard
        report = roundtrip(path, batch_tokens=batch_tokens, progress=seen.append)
        assert [d.document for d in report.differences] == bad and report.differ == 3
        assert report.documents == len(lines)
    assert sum(seen) == 3 * load_manifest(path).num_tokens
    assert [d.document for d in roundtrip(path, keep=2).differences] == bad[:2]
    assert roundtrip(path, keep=2).differ == 3


def test_split_documents_are_counted_not_called_errors(make_dataset, tok, lines):
    """A document over settings.max_doc_bytes was tokenized in pieces: a whole-text encoding may
    join tokens across a cut, so it is a note. Under the limit, the same ids are an error."""
    long_text = " ".join(lines[:4])
    docs = [_encode(tok, line) + [EOS] for line in lines[4:]]
    docs.insert(1, _respelled(tok, long_text)[1] + [EOS])
    path = make_dataset(docs, shard_tokens=100, eos_id=EOS)
    m = json.loads((path / "manifest.json").read_text())
    size = len(long_text.encode())
    for limit, code in ((size - 1, 0), (size, 1)):
        m["settings"] = {"max_doc_bytes": limit}  # settings are not in the fingerprint: verify still passes
        (path / "manifest.json").write_text(json.dumps(m))
        r = shards_cli("verify", path, "--tokenizer-roundtrip")
        assert r.exit_code == code, r.output
        if code == 0:
            assert r.stderr.strip() == ("note: 1 document(s) longer than settings.max_doc_bytes were tokenized in "
                                        "pieces by preprocess and differ from a whole-text encoding; not errors, not "
                                        "checked (documents 1)")
            assert f"({len(docs) - 1:,} checked)" in r.stdout
        else:
            assert "error: " + str(path) + ": document 1 (" in r.stderr


def test_unknown_and_broken_bytes_are_counted_apart(make_dataset, tok, lines):
    """<unk> and byte pieces that are no UTF-8 cannot give their text back: counted as notes. A
    non-canonical split elsewhere in such a document is still an error."""
    vocab = tok.get_vocab()
    unk, lone_byte = tok.unk_token_id, vocab["<0xE3>"]  # the first byte of a 3-byte character, alone
    a, b = _encode(tok, lines[0]), _encode(tok, lines[1])
    docs = [a + [unk] + b + [EOS], a + [lone_byte] + b + [EOS], _respelled(tok, lines[2])[1] + [unk] + [EOS],
            b + [EOS]]
    path = make_dataset(docs, shard_tokens=1000, eos_id=EOS)
    report = roundtrip(path)
    assert (report.documents, report.lossy, report.lossy_documents, report.differ) == (4, 2, [0, 1], 1)
    assert [d.document for d in report.differences] == [2]


def test_a_last_document_without_eos_and_a_dataset_without_eos(make_dataset, tok, lines):
    """Imported data may lack the EOS after its last document; --no-eos data has none at all."""
    docs = [_encode(tok, line) + [EOS] for line in lines[:5]] + [_encode(tok, lines[5])]
    assert roundtrip(make_dataset(docs, eos_id=EOS)).differ == 0
    plain = [_encode(tok, line) for line in lines[:6]]
    assert roundtrip(make_dataset(plain)).differ == 0
    plain[4] = _respelled(tok, lines[4])[1]
    assert [d.document for d in roundtrip(make_dataset(plain)).differences] == [4]


def test_quiet_and_a_dataset_that_fails_verify(make_dataset, tok, lines):
    docs = [_encode(tok, line) + [EOS] for line in lines[:6]]
    docs[3] = _respelled(tok, lines[3])[1] + [EOS]
    path = make_dataset(docs, shard_tokens=1000, eos_id=EOS)
    r = shards_cli("verify", path, "--tokenizer-roundtrip", "--quiet")
    assert r.exit_code == 1 and "document 3" in r.stderr
    shard = path / load_manifest(path).shards[0].file
    data = bytearray(shard.read_bytes())
    data[NPY_HEADER_BYTES] ^= 1
    shard.write_bytes(bytes(data))
    r = shards_cli("verify", path, "--tokenizer-roundtrip")
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines()[-1] == f"{path}: 1 problem(s) found; tokenizer roundtrip not run"


def test_batches_are_bounded():
    starts = np.array([0, 3, 4, 10, 30, 31, 32], dtype=np.int64)  # documents of 3, 1, 6, 20, 1, 1, 8 tokens
    assert list(_batches(starts, 40, 5)) == [(0, 2), (2, 3), (3, 4), (4, 6), (6, 7)]
    assert list(_batches(starts[:4], 12, 5)) == [(0, 2), (2, 3), (3, 4)]  # the docstring's example
    assert list(_batches(starts, 40, 1)) == [(i, i + 1) for i in range(7)]
    assert list(_batches(starts, 40, 100)) == [(0, 7)]
    assert list(_batches(starts[:0], 0, 5)) == []


def test_help_mentions_the_option():
    r = shards_cli("verify", "--help")
    assert r.exit_code == 0 and "--tokenizer-roundtrip" in r.stdout
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by conftest: nothing here may reach a hub


def test_preprocess_with_max_doc_bytes_passes(tmp_path, corpus_lines, tokenizer_dir):
    """A real long line cut by --max-doc-bytes: the check passes (whole-text equal, or a note)."""
    long_line = " ".join(corpus_lines[300:360])
    assert len(long_line.encode()) > 3 * 1024
    corpus = write_lines(tmp_path / "c.txt", corpus_lines[:20] + [long_line] + corpus_lines[20:40])
    out = tmp_path / "ds"
    r = preprocess_cli(corpus, "--tokenizer", tokenizer_dir, "--max-doc-bytes", 1024, "--out", out, "--workers", 0,
                       "--quiet")
    assert r.exit_code == 0, r.output
    assert load_manifest(out).raw["stats"]["split"] == 1
    report = roundtrip(out)
    assert report.documents == 41 and report.differ == 0 and report.lossy == 0
    assert report.split_documents == ([20] if report.split else [])
    r = shards_cli("verify", out, "--tokenizer-roundtrip")
    assert r.exit_code == 0, r.output


def test_the_batched_encoder_gives_autotokenizers_ids(tok, corpus_lines):
    """The fast batch path (encode_batch_fast on the backend) equals tok.encode, text by text."""
    from shards.roundtrip import _Checker

    check = _Checker(tok, EOS, None, 10)
    assert check.fast, "the project's tokenizer should take the fast path, or this test checks nothing"
    texts = corpus_lines[:1500] + ["a▁b", "x \ufffd y", "</s> <unk> <0x41>", "", "  ", "🙂"]
    assert check._encode(texts) == [tok.encode(t, add_special_tokens=False) for t in texts]
    ids = [tok.encode(t, add_special_tokens=False) for t in texts] + [[0, 5, 244, 196], [2, 1, 3]]
    assert tok.backend_tokenizer.decode_batch(ids, skip_special_tokens=False) == \
        [tok.decode(i, skip_special_tokens=False, clean_up_tokenization_spaces=False) for i in ids]


def test_a_tokenizer_that_truncates_by_default(tmp_path, tokenizer_dir, corpus_lines):
    """A tokenizer.json with truncation on: AutoTokenizer's encode does not truncate, nor may we."""
    from transformers import AutoTokenizer

    from tests.conftest import write_dataset

    trunc = tmp_path / "trunc-tok"
    shutil.copytree(tokenizer_dir, trunc)
    spec = json.loads((trunc / "tokenizer.json").read_text())
    spec["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
    (trunc / "tokenizer.json").write_text(json.dumps(spec))
    t = AutoTokenizer.from_pretrained(str(trunc))
    docs = [t.encode(line, add_special_tokens=False) + [EOS] for line in corpus_lines[:20]]
    assert max(len(d) for d in docs) > 20
    write_dataset(tmp_path / "ds", docs, vocab_size=1000, shard_tokens=100, tokenizer_dir=trunc, eos_id=EOS)
    report = roundtrip(tmp_path / "ds")
    assert (report.documents, report.differ) == (20, 0)


def test_verify_with_the_roundtrip_reads_the_manifest_once(make_dataset):
    """The command loads and confines the manifest once and hands it on to verify and the round trip."""
    from tests.open_spy import opened

    path = make_dataset([[5, 6, EOS], [7, EOS]], eos_id=EOS)
    with opened() as seen:
        r = shards_cli("verify", path, "--tokenizer-roundtrip")
    assert r.exit_code == 0, r.output
    assert seen.count(os.path.realpath(path / "manifest.json")) == 1
