"""SentencePiece's speed with AutoTokenizer's ids: when, and how, they are the same by construction.

AutoTokenizer runs tokenizer.json with the `tokenizers` library. For a unigram model both
libraries run the same Viterbi search (`tokenizers`' `Unigram::encode_optimized` is a line-by-
line port of SentencePiece's `Model::EncodeOptimized`): start positions left to right, the
pieces matching there shortest first, a piece replacing the best path ending where it ends
only if its score is strictly higher, unknown characters as one-character nodes. Two things
differ, and each is made not to matter:

1. Arithmetic. SentencePiece adds path scores in float32, `tokenizers` in float64, so a near
   tie (repeated characters: "lllll" is l|ll|ll or ll|ll|l at equal score) can go either way,
   and on long documents rounding decides more. Scores trained here are multiples of
   2**-SCORE_BITS; a sum of n such scores, each at most S in size, is exact in float32 while
   n * S <= 2**(24 - SCORE_BITS) and in float64 while n * S <= 2**(53 - SCORE_BITS). Every piece
   covers at least one character, so bounding a text's characters bounds every sum the
   search forms. Exact sums and the same comparisons give the same path.
2. Pre-tokenization. tokenizer.json isolates the user-defined piece "<" before the model sees
   the text (and control and byte pieces, which all contain "<", can then never match). The
   encoder here splits at "<" the same way, so SentencePiece never sees it either.

A text longer than the float32 bound is cut where no piece can span the cut (a pair of
adjacent characters that occurs in no piece): every path of the search passes through such a
position, so the search decomposes there exactly. A text with no such cut, or beyond the float64
bound, is encoded by the `tokenizers` engine itself. `check()` checks every premise above on
the files, so a model that does not meet them (a user's own .model, BPE) never gets here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from preprocess.errors import TokenizerError
from preprocess.spm_model import BYTE, CONTROL, NORMAL, SCORE_BITS, UNIGRAM, UNKNOWN, USER_DEFINED, read_proto

_UNK_PENALTY = 10.0  # kUnkPenalty in SentencePiece, K_UNK_PENALTY in tokenizers
_SPACE = "\u2581"


def check(tok_dir: Path, split_special: bool) -> tuple[str | None, float | None]:
    """(Why SentencePiece cannot give AutoTokenizer's ids for this plain directory, None when it
    can; then the lowest score in tokenizer.json as `tokenizers` loads it, which bounds the
    texts its search sums exactly: ExactEncoder needs it, and it is read here, once.)

    `split_special`: the directory's split_special_tokens (preprocess.tokenizer_dir.Plain).
    """
    if not split_special:
        return "split_special_tokens is off (AutoTokenizer matches special tokens in text)", None
    proto = _model(tok_dir)
    if isinstance(proto, str):
        return proto, None
    return _json_problem(tok_dir, proto)


def _model(tok_dir: Path):
    """tokenizer.model's proto when SentencePiece can run it as tokenizer.json needs, else why not."""
    model = tok_dir / "tokenizer.model"
    if not model.is_file():
        return "no tokenizer.model"
    try:
        proto = read_proto(model)
    except (TokenizerError, OSError):  # AutoTokenizer runs tokenizer.json and never reads it
        return "its tokenizer.model is not a readable SentencePiece model"
    spec, norm = proto.trainer_spec, proto.normalizer_spec
    if spec.model_type != UNIGRAM:
        return "not a unigram model"
    if not spec.byte_fallback:
        return "no byte fallback"
    if norm.precompiled_charsmap or norm.add_dummy_prefix or norm.remove_extra_whitespaces or not norm.escape_whitespaces:
        return "its normalizer does more than escape spaces"
    if [p.piece for p in proto.pieces if p.type == USER_DEFINED] != ["<"]:
        return 'its user-defined pieces are not exactly "<"'
    if any(p.type not in (NORMAL, USER_DEFINED, UNKNOWN, CONTROL, BYTE) for p in proto.pieces):
        return "it has unused pieces"
    if any(p.type in (UNKNOWN, CONTROL, BYTE) and "<" not in p.piece for p in proto.pieces):
        return 'a control, unknown or byte piece does not contain "<"'
    if not all(_on_grid(p.score) for p in proto.pieces if p.type == NORMAL):
        return f"its scores are not multiples of 2**-{SCORE_BITS} (not trained by preprocess)"
    return proto


def _json_problem(tok_dir: Path, proto) -> tuple[str | None, float | None]:
    """tokenizer.json must hold this model, as `tokenizers` loads it: same pieces, same scores
    (read back from the loaded tokenizer: its JSON parser is not correctly rounded), the same
    normalizer, "<" isolated, and no added token but the special pieces themselves."""
    from tokenizers import Tokenizer

    loaded = json.loads(Tokenizer.from_file(str(tok_dir / "tokenizer.json")).to_str())
    model = loaded.get("model") or {}
    if model.get("type") != "Unigram" or not model.get("byte_fallback") or model.get("unk_id") != proto.trainer_spec.unk_id:
        return "tokenizer.json is not this unigram model", None
    vocab = model.get("vocab") or []
    if [v[0] for v in vocab] != [p.piece for p in proto.pieces]:
        return "tokenizer.json's pieces differ from tokenizer.model's", None
    if any(v[1] != p.score for v, p in zip(vocab, proto.pieces) if p.type in (NORMAL, USER_DEFINED)):
        return "tokenizer.json's scores differ from tokenizer.model's", None
    lowest = min(v[1] for v in vocab)
    if not _on_grid(lowest):
        return "tokenizer.json's lowest score is not on the score grid", None
    if loaded.get("normalizer") != {"type": "Sequence", "normalizers": [
            {"type": "Replace", "pattern": {"String": " "}, "content": _SPACE}]}:
        return "tokenizer.json's normalizer is not SentencePiece's", None
    if loaded.get("pre_tokenizer") != {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "<"}, "behavior": "Isolated", "invert": False}]}:
        return 'tokenizer.json does not isolate "<"', None
    pieces = [p.piece for p in proto.pieces]
    for t in loaded.get("added_tokens", []):
        if not t.get("special") or not 0 <= t["id"] < len(pieces) or pieces[t["id"]] != t["content"]:
            return f"tokenizer.json adds the token {t.get('content')!r}", None
        if proto.pieces[t["id"]].type not in (CONTROL, UNKNOWN):
            return f"tokenizer.json makes the piece {t['content']!r} special", None
    return None, float(lowest)


def _on_grid(score: float) -> bool:
    return float(score * (1 << SCORE_BITS)).is_integer()


class ExactEncoder:
    """SentencePiece encoding that returns what `tokenizers` returns on tokenizer.json, for a
    directory `check()` accepts, given the lowest score it found there. Called with a batch of
    texts, returns their ids."""

    def __init__(self, tok_dir: Path, lowest_score: float,
                 fallback: Callable[[], Callable[[Sequence[str]], list[list[int]]]]):
        import sentencepiece as spm

        proto = read_proto(tok_dir / "tokenizer.model")
        self.sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
        self.lt = self.sp.piece_to_id("<")
        normal = [p.score for p in proto.pieces if p.type == NORMAL]
        low = min(normal)
        # The largest score either search adds (in size): a piece, or an unknown character
        # (SentencePiece: the lowest normal score - 10; tokenizers: the lowest of all - 10).
        sp_step = max(max(abs(s) for s in normal), abs(low - _UNK_PENALTY))
        tk_step = max(sp_step, abs(lowest_score - _UNK_PENALTY))
        grid = 1 << SCORE_BITS
        self.sp_chars = int((1 << 24) // (sp_step * grid))  # longest text SentencePiece sums exactly
        self.tk_chars = int((1 << 53) // (tk_step * grid))  # ... and tokenizers
        # Adjacent characters inside some piece (spaces as "▁"): a cut elsewhere splits no piece.
        self.pairs = {p.piece[i:i + 2] for p in proto.pieces if p.type == NORMAL for i in range(len(p.piece) - 1)}
        self._fallback_factory, self._fallback = fallback, None

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        texts = texts if isinstance(texts, list) else list(texts)
        limit = self.sp_chars
        # Checked in C where possible: most batches hold no "<" and no text over the limit.
        if "<" not in "".join(texts) and max(map(len, texts), default=0) <= limit:
            return self.sp.encode(texts, num_threads=1)
        odd = [i for i, t in enumerate(texts) if "<" in t or len(t) > limit]
        simple = list(texts)
        for i in odd:
            simple[i] = ""
        out = self.sp.encode(simple, num_threads=1)
        # Each odd text becomes a plan: indices into `chunks`, -1 for "<"; None when it cannot
        # be summed exactly (the fallback engine encodes it).
        chunks: list[str] = []
        plans = [(i, self._plan(texts[i], chunks)) for i in odd]
        ids = self.sp.encode(chunks, num_threads=1) if chunks else []
        slow = []
        for i, plan in plans:
            if plan is None:
                slow.append(i)
            else:
                out[i] = self._join(plan, ids)
        if slow:
            if self._fallback is None:
                self._fallback = self._fallback_factory()
            for i, got in zip(slow, self._fallback([texts[i] for i in slow])):
                out[i] = list(got)
        return out

    def _join(self, plan: list[int], ids: list[list[int]]) -> list[int]:
        joined: list[int] = []
        for step in plan:  # extend, not a per-id comprehension: odd texts are often long
            if step < 0:
                joined.append(self.lt)
            else:
                joined.extend(ids[step])
        return joined

    def _plan(self, text: str, chunks: list[str]) -> list[int] | None:
        """Cut `text` at "<" and into chunks SentencePiece sums exactly (appended to `chunks`);
        returns the order (-1 for "<", else an index into chunks), or None for the fallback."""
        plan: list[int] = []
        for n, segment in enumerate(text.split("<")):
            if n:
                plan.append(-1)
            if len(segment) > self.tk_chars:
                return None
            for chunk in self._cuts(segment):
                if chunk is None:
                    return None
                plan.append(len(chunks))
                chunks.append(chunk)
        return plan

    def _cuts(self, segment: str):
        """`segment` in pieces of at most sp_chars characters, cut only where no piece spans;
        a None where there is no such cut within sp_chars."""
        start, n = 0, len(segment)
        norm = segment.replace(" ", _SPACE) if n > self.sp_chars else segment
        while n - start > self.sp_chars:
            cut = start + self.sp_chars
            while cut > start and norm[cut - 1:cut + 1] in self.pairs:
                cut -= 1
            if cut == start:
                yield None
                return
            yield segment[start:cut]
            start = cut
        if start < n:
            yield segment[start:]
