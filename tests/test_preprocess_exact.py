"""The shard ids are AutoTokenizer's for every document, not only for a sample: equal-score ties in
the unigram search, long documents, "<", a user's own .model, and which engine is chosen."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess.engines import EngineSpec, choose_engine, make_encoder
from tests.helpers import documents, preprocess_cli, write_lines

# Scores as SentencePiece writes them (float32 log probabilities, not round numbers), chosen so
# that d+ddd and dd+dd, ]+]] and ]]+], n+nnn and nn+nn tie: float32 sums (SentencePiece) and
# float64 sums (tokenizers, so AutoTokenizer) then break the tie differently ("dd|dd" vs "d|ddd").
TIE_PIECES = [("d", -8.3), ("dd", -9.7), ("ddd", -11.1), ("]", -7.9), ("]]", -9.35), ("n", -8.05), ("nn", -10.4),
              ("nnn", -12.2), ("\\", -9.1), ("#", -8.7)]
TIE_RUNS = ["\\ddd", "]]]]]", "#nnnnn", " dddd", "[ddddddd", "#]]]", " ]]]]]", "値は dddd と ]]]]]]] です",
            *(c * n for c in "d]n" for n in range(2, 30)), *("#" + "n" * n for n in range(2, 30))]


def _hand_model(tokenizer_dir: Path, out: Path, *, on_grid: bool) -> Path:
    """The conftest model with TIE_PIECES added: a user's own .model, or (on_grid) the same with
    its scores rounded as preprocess rounds the ones it trains."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((tokenizer_dir / "tokenizer.model").read_bytes())
    have = {p.piece: p for p in proto.pieces}
    for piece, score in TIE_PIECES:
        if piece in have:
            have[piece].score = score
        else:
            new = proto.pieces.add()
            new.piece, new.score, new.type = piece, score, 1
    if on_grid:
        from preprocess.spm_model import quantize

        quantize(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(proto.SerializeToString())
    return out


def _exact_encoder(tok_dir: Path):
    """The SentencePiece engine as a run builds it (its spec from choose_engine)."""
    spec = choose_engine(tok_dir, tok_dir.parent)
    assert spec.engine == "sentencepiece" and spec.lowest_score is not None
    return make_encoder(spec)


def _autotokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def test_ties_give_autotokenizers_ids_with_a_users_model(tmp_path, tokenizer_dir, corpus_lines):
    """A user's .model whose ties SentencePiece breaks otherwise; the tie documents come after the
    first 256, where no sample check looks."""
    import sentencepiece as spm

    model = _hand_model(tokenizer_dir, tmp_path / "mine.model", on_grid=False)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    corpus = write_lines(tmp_path / "in.txt", corpus_lines[:300] + TIE_RUNS)
    r = preprocess_cli(corpus, "--tokenizer", model, "--out", tmp_path / "ds", "--workers", 0, "-q")
    assert r.exit_code == 0, r.output
    tok = _autotokenizer(tmp_path / "ds" / "tokenizer")
    want = [tok.encode(t, add_special_tokens=False) for t in corpus_lines[:300] + TIE_RUNS]
    assert [list(d) for d in documents(tmp_path / "ds")] == want
    # The test means something: SentencePiece itself gives other ids for some of these.
    assert sum(sp.encode(t) != w for t, w in zip(TIE_RUNS, want[300:])) > 10


def test_scores_on_the_grid_make_the_two_searches_agree(tmp_path, tokenizer_dir):
    """The same model with its scores rounded to multiples of 2**-6: exact sums, the same ties."""
    import sentencepiece as spm

    from preprocess.tokenizer import sentencepiece_to_transformers

    texts = TIE_RUNS + ["dd" * 500 + " " + "]" * 999]
    for on_grid in (False, True):
        model = _hand_model(tokenizer_dir, tmp_path / str(on_grid) / "tokenizer.model", on_grid=on_grid)
        sentencepiece_to_transformers(model, model.parent)
        sp = spm.SentencePieceProcessor(model_file=str(model))
        tok = _autotokenizer(model.parent)
        differ = sum(sp.encode(t) != tok.encode(t, add_special_tokens=False) for t in texts)
        assert (differ == 0) == on_grid, (on_grid, differ)


@pytest.fixture(scope="module")
def exact_dir(tmp_path_factory, corpus_lines) -> Path:
    """A unigram model trained here on text full of repeated characters (pieces "dd", "]]", ...)."""
    from preprocess.tokenizer import train_sentencepiece

    rng = random.Random(0)
    runs = [" ".join(c * rng.randint(1, 7) for c in rng.choices("ld]=#n\\", k=8)) for _ in range(300)]
    out = tmp_path_factory.mktemp("exact") / "tokenizer"
    train_sentencepiece(corpus_lines[:1500] + runs, 1000, out, threads=1, character_coverage=0.98)
    return out


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory, corpus_lines) -> Path:
    from preprocess.tokenizer import train_sentencepiece

    out = tmp_path_factory.mktemp("bpe") / "tokenizer"
    train_sentencepiece(corpus_lines[:1500], 1000, out, model_type="bpe", threads=1, character_coverage=0.98)
    return out


def _long_texts(lines: list[str]) -> list[str]:
    rng = random.Random(1)
    return ([" ".join(rng.sample(lines, n)) for n in (30, 100, 400)] + ["<".join(rng.sample(lines, 20))]
            + ["l" * 5000, "ll" * 3000 + "<" + "=" * 7000])


def test_trained_unigram_uses_sentencepiece_and_is_exact(tmp_path, exact_dir, corpus_lines):
    """preprocess's own unigram model: the SentencePiece engine, AutoTokenizer's ids on ties,
    "<", long documents (cut where no piece spans, or handed to the fallback engine)."""
    spec = choose_engine(exact_dir, tmp_path)
    assert spec.engine == "sentencepiece"
    encode = make_encoder(spec)
    assert encode.sp_chars < 20_000  # the long texts below need cutting
    texts = TIE_RUNS + _long_texts(corpus_lines) + ["a < b <", "<<<", "</s> and <0x41>", "x" * 30 + "<"]
    tok = _autotokenizer(exact_dir)
    assert encode(texts) == [tok.encode(t, add_special_tokens=False) for t in texts]


def test_a_workers_sentencepiece_engine_reads_only_tokenizer_model(tmp_path, exact_dir, corpus_lines):
    """tokenizer.json is read once, in the main process (choose_engine): the spec carries the
    lowest score the exact-sum bound needs, and a worker's engine opens only tokenizer.model
    (tokenizer.json again only if a text needs the fallback engine)."""
    import shutil

    spec = choose_engine(exact_dir, tmp_path)
    assert spec.engine == "sentencepiece" and spec.lowest_score == -1e9  # the never-chosen pieces
    copy = tmp_path / "copy"
    shutil.copytree(exact_dir, copy)
    (copy / "tokenizer.json").unlink()
    texts = corpus_lines[:50] + TIE_RUNS
    encode = make_encoder(EngineSpec.from_json(spec.to_json(), str(copy)))  # as a resumed run rebuilds it
    assert encode(texts) == make_encoder(spec)(texts)


def test_cutting_long_texts_anywhere_no_piece_spans_changes_nothing(exact_dir, corpus_lines):
    """With a tiny exact-sum limit every text is cut, many times: the ids must not change."""
    encode = _exact_encoder(exact_dir)
    tok = _autotokenizer(exact_dir)
    texts = corpus_lines[:200] + TIE_RUNS
    want = [tok.encode(t, add_special_tokens=False) for t in texts]
    cuts = []
    real_cuts = encode._cuts
    encode._cuts = lambda segment: (cuts.append(segment), real_cuts(segment))[1]
    for limit in (7, 20, 61):
        encode.sp_chars = limit
        assert encode(texts) == want, limit
    assert len(cuts) > 300  # every corpus line was cut, at some limit

    fresh = _exact_encoder(exact_dir)
    calls = []
    fallback = fresh._fallback_factory
    fresh._fallback_factory = lambda: (calls.append(1), fallback())[1]
    fresh.sp_chars = 3
    texts = ["d" * 40, "ll" * 20, " ".join(corpus_lines[:3])]
    assert fresh(texts) == [tok.encode(t, add_special_tokens=False) for t in texts]
    assert calls  # a run with no cut inside 3 characters went to the tokenizers engine


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet="dl]n=#\\<> 　あいう。\n\tx😀", max_size=60), min_size=1, max_size=8),
       st.integers(min_value=2, max_value=40))
def test_sentencepiece_engine_equals_autotokenizer_on_any_text(exact_dir, texts, limit):
    encode = _exact_encoder(exact_dir)
    encode.sp_chars = limit
    tok = _autotokenizer(exact_dir)
    assert encode(texts) == [tok.encode(t, add_special_tokens=False) for t in texts]


def test_engine_choice(tmp_path, exact_dir, tokenizer_dir, bpe_dir):
    from preprocess.tokenizer import sentencepiece_to_transformers

    assert choose_engine(tokenizer_dir, tmp_path).engine == "sentencepiece"
    assert choose_engine(bpe_dir, tmp_path).engine == "tokenizers"  # BPE: AutoTokenizer's own engine
    mine = _hand_model(tokenizer_dir, tmp_path / "mine" / "tokenizer.model", on_grid=False)
    sentencepiece_to_transformers(mine, mine.parent)
    spec = choose_engine(mine.parent, tmp_path)
    assert (spec.engine, spec.backend_file, spec.split_special) == ("tokenizers", None, True)

    # Not plain (an added token in the config that tokenizer.json lacks): AutoTokenizer's own
    # backend, saved as it stands after loading, runs in the workers.
    odd = tmp_path / "odd"
    odd.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (odd / f).write_bytes((exact_dir / f).read_bytes())
    config = json.loads((odd / "tokenizer_config.json").read_text())
    config["extra_special_tokens"] = ["<|sep|>"]
    (odd / "tokenizer_config.json").write_text(json.dumps(config))
    spec = choose_engine(odd, tmp_path)
    assert spec.engine == "tokenizers" and spec.backend_file == str(tmp_path / "engine.json")
    tok = _autotokenizer(odd)
    texts = ["a <|sep|> b", "</s> x", "dddd"]
    assert make_encoder(spec)(texts) == [tok.encode(t, add_special_tokens=False) for t in texts]


def test_a_tokenizer_model_that_is_not_sentencepiece_leaves_the_tokenizers_engine(tmp_path, tokenizer_dir,
                                                                                     corpus_lines):
    """A plain directory's tokenizer.model is read only to see whether SentencePiece may encode;
    AutoTokenizer runs tokenizer.json. Garbage there means the `tokenizers` engine, not a refusal."""
    odd = tmp_path / "odd"
    odd.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (odd / f).write_bytes((tokenizer_dir / f).read_bytes())
    (odd / "tokenizer.model").write_bytes(b"not a SentencePiece model\n")
    assert choose_engine(odd, tmp_path).engine == "tokenizers"
    lines = corpus_lines[:40]
    r = preprocess_cli(write_lines(tmp_path / "in.txt", lines), "--tokenizer", odd, "--out", tmp_path / "ds",
                       "--workers", 0, "-q")
    assert r.exit_code == 0, r.output
    tok = _autotokenizer(tmp_path / "ds" / "tokenizer")
    assert [list(d) for d in documents(tmp_path / "ds")] == [tok.encode(t, add_special_tokens=False) for t in lines]


def test_plain_directories_are_what_autotokenizer_runs(tmp_path, exact_dir, tokenizer_dir, bpe_dir):
    """The premise of reading a plain directory without transformers: AutoTokenizer's backend is
    tokenizer.json as the `tokenizers` library loads it, and the facts agree."""
    from tokenizers import Tokenizer

    from preprocess.tokenizer import describe, sentencepiece_to_transformers
    from preprocess.tokenizer_dir import plain
    from shards.vocab import vocab_size

    mine = _hand_model(tokenizer_dir, tmp_path / "mine" / "tokenizer.model", on_grid=False)
    sentencepiece_to_transformers(mine, mine.parent)
    for d in (exact_dir, tokenizer_dir, bpe_dir, mine.parent):
        facts = plain(d)
        assert facts is not None, d
        tok = _autotokenizer(d)
        assert tok.backend_tokenizer.to_str() == Tokenizer.from_file(str(d / "tokenizer.json")).to_str()
        assert facts.split_special == tok.split_special_tokens is True
        info = describe(d, "x", "k")
        assert (info.vocab_size, info.eos_id, info.eos_token, info.bos_id) == \
            (vocab_size(tok), tok.eos_token_id, tok.eos_token, tok.bos_token_id)
        assert facts.vocab == tok.get_vocab()


def test_a_tokenizer_without_a_tokenizers_backend_is_encoded_by_autotokenizer(tmp_path, tokenizer_dir, corpus_lines):
    """transformers' SentencePieceBackend (a Python tokenizer): no fast engine can promise its
    ids, so the workers run AutoTokenizer itself."""
    spb = tmp_path / "spb"
    spb.mkdir()
    (spb / "tokenizer.model").write_bytes((tokenizer_dir / "tokenizer.model").read_bytes())
    (spb / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "SentencePieceBackend", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>",
        "pad_token": "<pad>", "split_special_tokens": True}))
    assert choose_engine(spb, tmp_path).engine == "transformers"
    corpus = write_lines(tmp_path / "in.txt", corpus_lines[:40] + TIE_RUNS)
    r = preprocess_cli(corpus, "--tokenizer", spb, "--out", tmp_path / "ds", "--workers", 1, "-q")
    assert r.exit_code == 0, r.output
    tok = _autotokenizer(tmp_path / "ds" / "tokenizer")
    assert type(tok).__name__ == "SentencePieceBackend"
    assert [list(d) for d in documents(tmp_path / "ds")] == \
        [tok.encode(t, add_special_tokens=False) for t in corpus_lines[:40] + TIE_RUNS]
