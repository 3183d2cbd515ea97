"""The tokenizer round trip: each document's ids are what the dataset's own tokenizer makes of its text.

A dataset holds ids, not text, so a receiving team checks the guarantee this way: decode a
document's ids (without its trailing EOS) with `AutoTokenizer.from_pretrained(DIR/tokenizer)`,
encode that text again with `encode(text, add_special_tokens=False)`, and compare. Equal ids mean
the shards hold exactly what the shipped tokenizer gives that text.

Where decode -> encode cannot be an identity for honest reasons, the document is counted apart,
not called an error:
- `split`: longer than the manifest's settings.max_doc_bytes, so preprocess tokenized it in
  pieces (cut between sentences); encoding the whole text may join tokens across a cut.
- `lossy`: the ids hold the unknown token, or byte pieces that are not UTF-8 (they decode to
  U+FFFD): the text cannot be recovered from the ids, so re-encoding it cannot give them back.
  Only the differences that lie at such a token count; any other difference in the same
  document is an error.
Text holding `▁` decodes as a space with SentencePiece tokenizers, but both encode to the same
ids, so it passes.

Work goes in batches (the fast tokenizer's batch calls run in Rust) of a bounded number of
tokens, so memory does not grow with the dataset.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shards.errors import ShardFormatError
from shards.manifest import Manifest
from shards.reader import Dataset
from shards.tokenizer_guard import load_tokenizer

BATCH_TOKENS = 1 << 18  # tokens decoded and re-encoded per call: ~20 MB of Python lists at most
BATCH_DOCS = 4096
_DIFF_LIMIT = 200_000  # longer documents get the coarse lossy rule (difflib is quadratic at worst)
_REPLACEMENT = "\ufffd"


@dataclass(frozen=True, slots=True)
class Difference:
    """A document whose ids differ from the re-encoding of its text."""

    document: int  # number in the whole dataset
    shard: str
    tokens: int  # its ids, trailing EOS not counted
    position: int  # first token that differs
    ids: tuple[int, ...]  # a few of its ids from `position` on
    expected: tuple[int, ...]  # what the tokenizer gives there
    excerpt: str  # the text around `position`

    def __str__(self) -> str:
        return (f"document {self.document} ({self.shard}, {self.tokens} tokens): ids differ from the tokenizer's "
                f"re-encoding at token {self.position}: {list(self.ids)} where it gives {list(self.expected)}, "
                f"text {self.excerpt!r}")


@dataclass
class Report:
    """Counts of every kind, and the first `keep` document numbers of each."""

    documents: int = 0
    differ: int = 0
    split: int = 0
    lossy: int = 0
    differences: list[Difference] = field(default_factory=list)
    split_documents: list[int] = field(default_factory=list)
    lossy_documents: list[int] = field(default_factory=list)


def roundtrip(path: str | os.PathLike[str], *, progress: Callable[[int], None] | None = None, keep: int = 100,
              batch_tokens: int = BATCH_TOKENS, manifest: Manifest | None = None) -> Report:
    """Decode and re-encode every document of the dataset at `path` (run `verify` first: this
    trusts the bytes and checks only what the tokenizer makes of them). `manifest`: what
    load_manifest(path) returned, when the caller has it already."""
    ds = Dataset(path, manifest=manifest)
    tok = load_tokenizer(ds.tokenizer_dir, str(ds.tokenizer_dir))
    m = ds.manifest
    max_doc_bytes = (m.raw.get("settings") or {}).get("max_doc_bytes")
    check = _Checker(tok, ds.eos_id if m.eos_separates_documents else None, max_doc_bytes, keep)
    report = Report()
    first_doc = 0
    for shard, entry in enumerate(m.shards):
        starts, base = ds.document_starts(shard), int(ds.starts[shard])
        for lo, hi in _batches(starts, entry.num_tokens, batch_tokens):
            bounds = [int(x) for x in starts[lo:hi]] + [int(starts[hi]) if hi < len(starts) else entry.num_tokens]
            if any(b <= a for a, b in zip(bounds, bounds[1:])) or bounds[0] < 0 or bounds[-1] > entry.num_tokens:
                raise ShardFormatError(f"{ds.path / entry.index_file}: document starts out of order; run `shards verify`")
            # Positioned reads, not a memory map: mapped pages would pile up in RSS over the dataset.
            block = ds.read(base + bounds[0], base + bounds[-1]).tolist()
            docs = [block[a - bounds[0]:b - bounds[0]] for a, b in zip(bounds, bounds[1:])]
            check.batch(docs, first_doc + lo, entry.file, report)
            if progress:
                progress(bounds[-1] - bounds[0])
        first_doc += entry.num_documents
    ds.close()
    return report


def _batches(starts: np.ndarray, num_tokens: int, batch_tokens: int):
    """(lo, hi) ranges of a shard's documents holding at most `batch_tokens` tokens together,
    or one document alone when it is longer. E.g. starts [0, 3, 4, 10], 12 tokens, batch 5:
    (0, 2) (3 + 1 tokens), (2, 3) (6), (3, 4) (2)."""
    n = len(starts)
    lo = 0
    while lo < n:
        limit = int(starts[lo]) + batch_tokens
        # Document j ends where j + 1 starts (the last one at num_tokens): take those ending by `limit`.
        hi = n if num_tokens <= limit else int(np.searchsorted(starts, limit, side="right")) - 1
        hi = min(max(hi, lo + 1), lo + BATCH_DOCS)
        yield lo, hi
        lo = hi


class _Checker:
    def __init__(self, tok, eos_id: int | None, max_doc_bytes: int | None, keep: int):
        self.tok, self.eos_id, self.max_doc_bytes, self.keep = tok, eos_id, max_doc_bytes, keep
        self.unk = tok.unk_token_id
        self.fast = _plain_tokenizers_backend(tok)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """AutoTokenizer's ids for each text. For the plain `tokenizers`-backed class (what this
        project writes), its __call__ is one Rust encode_batch after setting special-token
        splitting, no truncation and no padding on the backend; encode_batch_fast is the same
        encoding without offsets (about 2x faster here). Any difference it finds is confirmed
        with tok.encode itself before it is reported."""
        if self.fast:
            backend = self.tok.backend_tokenizer
            if (backend.truncation is None and backend.padding is None
                    and backend.encode_special_tokens == bool(self.tok.split_special_tokens)):
                return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        return self.tok(texts, add_special_tokens=False, return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]

    def batch(self, docs: list[list[int]], first: int, shard: str, report: Report) -> None:
        if self.eos_id is not None:
            # Imported data may lack the EOS on its last document: strip it only where it is.
            docs = [d[:-1] if d and d[-1] == self.eos_id else d for d in docs]
        if self.fast:  # what tok.decode returns without clean-up, minus its per-id Python type checks
            texts = self.tok.backend_tokenizer.decode_batch(docs, skip_special_tokens=False)
        else:
            texts = self.tok.batch_decode(docs, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        again = self._encode(texts)
        report.documents += len(docs)
        for j, (ids, text, want) in enumerate(zip(docs, texts, again)):
            if ids != want and ids != (want := self.tok.encode(text, add_special_tokens=False)):
                self._classify(first + j, shard, ids, want, text, report)

    def _classify(self, doc: int, shard: str, ids: list[int], want: list[int], text: str, report: Report) -> None:
        if self.max_doc_bytes is not None and len(text.encode("utf-8", "surrogatepass")) > self.max_doc_bytes:
            report.split += 1
            _note(report.split_documents, doc, self.keep)
        elif self._lossy(ids, want, text):
            report.lossy += 1
            _note(report.lossy_documents, doc, self.keep)
        else:
            report.differ += 1
            if len(report.differences) < self.keep:
                report.differences.append(self._difference(doc, shard, ids, want))

    def _lossy(self, ids: list[int], want: list[int], text: str) -> bool:
        """True when every difference lies at an <unk> of the ids or at bytes that decode to U+FFFD."""
        has_unk = self.unk is not None and self.unk in ids
        if not has_unk and _REPLACEMENT not in text:
            return False
        if max(len(ids), len(want)) > _DIFF_LIMIT:
            return True
        sm = difflib.SequenceMatcher(None, ids, want, autojunk=False)
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag == "equal":
                continue
            if has_unk and self.unk in ids[i1:i2]:
                continue
            if _REPLACEMENT in self._decode(ids[i1:i2]) and _REPLACEMENT in self._decode(want[j1:j2]):
                continue
            return False
        return True

    def _difference(self, doc: int, shard: str, ids: list[int], want: list[int]) -> Difference:
        k = next((i for i, (a, b) in enumerate(zip(ids, want)) if a != b), min(len(ids), len(want)))
        before, after = self._decode(ids[max(0, k - 8):k]), self._decode(ids[k:k + 12])
        return Difference(doc, shard, len(ids), k, tuple(ids[k:k + 6]), tuple(want[k:k + 6]),
                          (before[-20:] + after)[:60])

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _plain_tokenizers_backend(tok) -> bool:
    """True for exactly transformers' TokenizersBackend (no subclass that could change encoding),
    after one official call has put its backend in the state __call__ uses."""
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    if type(tok) is not TokenizersBackend:
        return False
    tok([""], add_special_tokens=False)
    return True


def _note(numbers: list[int], doc: int, keep: int) -> None:
    if len(numbers) < keep:
        numbers.append(doc)


def summary(path: Path, report: Report, tokenizer_dir: Path) -> list[str]:
    """The command's lines for stderr: one error per difference listed, notes for the counted kinds."""
    lines = [f"error: {path}: {d}" for d in report.differences]
    if report.split:
        lines.append(f"note: {report.split:,} document(s) longer than settings.max_doc_bytes were tokenized "
                     "in pieces by preprocess and differ from a whole-text encoding; not errors, not checked "
                     f"(documents {_listed(report.split_documents, report.split)})")
    if report.lossy:
        lines.append(f"note: {report.lossy:,} document(s) hold <unk> or bytes that are not UTF-8, so their "
                     "text cannot be recovered from the ids; differences there are not errors "
                     f"(documents {_listed(report.lossy_documents, report.lossy)})")
    if report.differ:
        shown = f"; the first {len(report.differences)} are listed" if report.differ > len(report.differences) else ""
        lines.append(f"{path}: {report.differ:,} of {report.documents:,} documents differ from "
                     f"AutoTokenizer.from_pretrained({str(tokenizer_dir)!r}).encode(text, "
                     f"add_special_tokens=False){shown}")
    return lines


def _listed(numbers: list[int], count: int) -> str:
    text = ", ".join(str(n) for n in numbers)
    return text + (f", ... ({count - len(numbers):,} more)" if count > len(numbers) else "")
