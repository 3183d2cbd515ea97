"""SentencePiece model files: read the protobuf, quantize unigram scores, and write the
transformers files (tokenizer.json, tokenizer_config.json) with the `tokenizers` library alone.

Writing them here rather than through transformers' converter keeps `import transformers`
(over a second of CPU) out of `preprocess --vocab-size` and `--tokenizer x.model`, and fixes the
format that `preprocess.spm_exact` reasons about. The layout is the converter's for these
settings (`SpmConverter.build_tokenizer_from_spm_proto`); models with other normalizer settings
still go through the converter (see `preprocess.tokenizer`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from preprocess.errors import TokenizerError

# sentencepiece_model.proto: piece types and TrainerSpec.model_type.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNIGRAM, BPE = 1, 2
# Unigram scores trained here are multiples of 2**-SCORE_BITS (1/64 of a nat): then SentencePiece
# (float32 sums) and `tokenizers` (float64 sums) add path scores exactly and so choose the same
# segmentation, ties included (see preprocess.spm_exact). On the sample corpus 15 of 4,582
# documents segment differently from the unrounded model, with the same number of tokens.
SCORE_BITS = 6
# A score no text will choose: control, unknown and byte pieces exist in the vocabulary but
# SentencePiece never matches them in text ("</s>" in a document stays four characters).
NEVER = -1e9
# What transformers writes for a tokenizer without a length limit (int(1e30)).
_NO_LIMIT = 1000000000000000019884624838656
SPECIAL_KEYS = (("unk", "unk_id"), ("bos", "bos_id"), ("eos", "eos_id"), ("pad", "pad_id"))


def model_proto():
    """The generated protobuf class, from the sentencepiece package itself (no transformers)."""
    from sentencepiece import sentencepiece_model_pb2

    return sentencepiece_model_pb2.ModelProto()


def read_proto(path: Path):
    proto = model_proto()
    try:
        proto.ParseFromString(Path(path).read_bytes())
    except OSError:
        raise
    except Exception:
        raise TokenizerError(f"{path}: not a SentencePiece model file") from None
    if not proto.pieces:
        raise TokenizerError(f"{path}: not a SentencePiece model file (no pieces)")
    return proto


def quantize(proto) -> None:
    """Round every normal piece's score to a multiple of 2**-SCORE_BITS (in place)."""
    scale = float(1 << SCORE_BITS)
    for piece in proto.pieces:
        if piece.type == NORMAL:
            piece.score = round(piece.score * scale) / scale


def buildable(proto) -> bool:
    """The settings `write_transformers_files` reproduces exactly: no normalization besides
    escaping spaces as "▁", no dummy prefix, a unigram or BPE model."""
    n = proto.normalizer_spec
    return (proto.trainer_spec.model_type in (UNIGRAM, BPE) and not n.precompiled_charsmap
            and not n.add_dummy_prefix and not n.remove_extra_whitespaces and n.escape_whitespaces)


def special_tokens(proto) -> dict[str, str]:
    """{"eos_token": "</s>", ...} for the ids the trainer spec names."""
    spec, names = proto.trainer_spec, {}
    for key, field in SPECIAL_KEYS:
        idx = getattr(spec, field)
        if 0 <= idx < len(proto.pieces):
            names[f"{key}_token"] = proto.pieces[idx].piece
    return names


def write_transformers_files(proto, out_dir: Path) -> None:
    """tokenizer.json and tokenizer_config.json for a `buildable` model, loadable by AutoTokenizer
    (as TokenizersBackend) exactly as written: every special token is already in the file."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE as BPEModel, Unigram

    assert buildable(proto)
    spec = proto.trainer_spec
    if spec.model_type == BPE:
        # A real BPE, merges ranked by piece score as SentencePiece's BPE merges them.
        vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
        model = BPEModel(vocab=vocab, merges=_bpe_merges(proto), unk_token=spec.unk_piece, fuse_unk=True,
                         byte_fallback=spec.byte_fallback, dropout=None,
                         ignore_merges=any(p.type == USER_DEFINED for p in proto.pieces))
    else:
        scores = [(p.piece, NEVER if p.type in (UNKNOWN, CONTROL, BYTE) else p.score) for p in proto.pieces]
        model = Unigram(scores, unk_id=spec.unk_id, byte_fallback=spec.byte_fallback)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence([normalizers.Replace(" ", "\u2581")])
    user = sorted((p.piece for p in proto.pieces if p.type == USER_DEFINED), key=len, reverse=True)
    if user:  # SentencePiece emits user-defined pieces whole: isolate them before the model
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex("|".join(re.escape(u) for u in user)), behavior="isolated")])
    steps = [decoders.Replace("\u2581", " ")] + ([decoders.ByteFallback()] if spec.byte_fallback else [])
    tok.decoder = decoders.Sequence(steps + [decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1")
    names = special_tokens(proto)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(names.values())])
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(names), indent=2) + "\n",
                                                   encoding="utf-8")


def tokenizer_config(names: dict[str, str]) -> dict[str, Any]:
    """What transformers 5 writes for such a tokenizer. split_special_tokens: text spelling
    "</s>" is encoded as text, as SentencePiece does, so a corpus cannot inject a boundary."""
    return {"backend": "tokenizers", **names, "model_max_length": _NO_LIMIT, "split_special_tokens": True,
            "tokenizer_class": "TokenizersBackend"}


def _bpe_merges(proto) -> list[tuple[str, str]]:
    # Only normal pieces are merged; a piece's merges rank by its score (higher first), then id.
    normal = {p.piece: (p.score, i) for i, p in enumerate(proto.pieces) if p.type == NORMAL}
    ranked = []
    for token, (score, idx) in normal.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in normal and right in normal:
                ranked.append((-score, idx, left, right))
    return [(left, right) for _, _, left, right in sorted(ranked)]
