"""`shards import`: a dataset directory from llm.c or nanoGPT token files and the tokenizer they use.

These files store no document boundaries, only a delimiter token between documents. nanoGPT's
prepare.py puts it after each document (EOS last, the default here). llm.c's fineweb.py
(karpathy/llm.c `dev/data/fineweb.py`, `tokenize_gpt2` / `tokenize_llama`) puts it *before*
each document (`tokens = [eot]; tokens.extend(encode(doc["text"]))`) and cuts files every
`shard_size` tokens, in the middle of a document: `--eos-first` reads that layout. Either way
the token stream, and so the fingerprint, is the files' tokens unchanged; only where
documents begin differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shards.errors import ShardFormatError, UsageError
from shards.layout import NPY_HEADER_BYTES, TOKENIZER_DIR, dtype_for_vocab
from shards.llmc import KNOWN, TokenFile, known_magic, open_token_file, tokens
from shards.manifest import Manifest
from shards.space import check_free, no_space, on_disk
from shards.staging import NewOutput, copy_files, tree_files
from shards.vocab import vocab_size
from shards.writer import DatasetWriter

MAX_DOC = 1 << 24  # a stretch without a delimiter becomes documents of this many tokens (memory stays bounded)
_CHUNK = 1 << 22  # tokens read per step


@dataclass(frozen=True, slots=True)
class Boundaries:
    """Where documents begin: at each `delimiter` (first=True) or right after it (first=False)."""

    delimiter: int | None
    first: bool


def split_documents(chunk: np.ndarray, b: Boundaries) -> tuple[int, np.ndarray]:
    """(tokens in the complete documents at the start of `chunk`, their lengths); the rest carries on.

    `chunk` begins where the current document begins. With delimiter 2:
    EOS last:  [5, 6, 2, 7, 2, 8]    -> ends [3, 5]: documents [5, 6, 2], [7, 2]; [8] carried
    EOS first: [2, 5, 6, 2, 7, 2, 8] -> starts [3, 5] (0 begins the carried document):
               documents [2, 5, 6], [2, 7]; [2, 8] carried
    Documents longer than MAX_DOC are cut into MAX_DOC-token pieces, so the result never
    depends on how the files were read.
    """
    if b.delimiter is None:
        return 0, np.empty(0, np.int64)
    hits = np.flatnonzero(chunk == b.delimiter)
    cuts = hits[hits > 0] if b.first else hits + 1
    if not len(cuts):
        return 0, np.empty(0, np.int64)
    lengths = np.diff(cuts, prepend=0)
    if int(lengths.max()) > MAX_DOC:
        lengths = _pieces(lengths)
    return int(cuts[-1]), lengths


def _pieces(lengths: np.ndarray) -> np.ndarray:
    """Each length (>= 1) cut into MAX_DOC-token pieces and one of the rest, in order, without a
    Python loop over the documents. With MAX_DOC 4: [9, 2, 4] -> [4, 4, 1, 2, 4]."""
    full, rest = np.divmod(lengths, MAX_DOC)
    counts = full + (rest > 0)  # pieces per document: [3, 1, 1]
    out = np.full(int(counts.sum()), MAX_DOC, dtype=np.int64)
    last = np.cumsum(counts) - 1  # where each document's last piece goes: [2, 3, 4]
    out[last[rest > 0]] = rest[rest > 0]
    return out


def import_tokens(paths: list[Path], fmt: str, tokenizer_dir: Path, out: Path, *, shard_tokens: int,
                  eos_token: str | None, eos_first: bool = False, progress: Callable[[int], None] | None = None,
                  say: Callable[[str], None] | None = None) -> Manifest:
    """Build the dataset `out` from token files (all checked before anything is written).

    Tokens before the first delimiter of an EOS-first stream form a first, partial document
    (its beginning lay in a file not imported). A failure, a full disk included, leaves no
    `out` behind (or an empty one that existed before).
    """
    say = say or (lambda s: None)
    files = [open_token_file(p, fmt) for p in paths]
    tok = _load_tokenizer(tokenizer_dir)
    vocab = vocab_size(tok)
    bounds = _boundaries(tok, eos_token, eos_first, files, say)
    tok_files = tree_files(tokenizer_dir)  # checked inert by _load_tokenizer: no link in it leads out
    total = sum(f.count for f in files)
    with NewOutput(out, "shards import"):
        needed = on_disk([NPY_HEADER_BYTES + total * dtype_for_vocab(vocab).itemsize, *(s for _, s in tok_files)], out)
        check_free(out, needed, f"--out {out}: {total:,} tokens and the tokenizer")
        with no_space(out / TOKENIZER_DIR):
            copy_files(tokenizer_dir, out / TOKENIZER_DIR, tok_files)  # verbatim: the source's tokenizer hash
        writer = DatasetWriter(out, vocab_size=vocab, shard_tokens=shard_tokens)
        _write(files, bounds, vocab, tokenizer_dir, writer, progress)
        settings = {"imported": fmt, "eos_first": bounds.first, "files": [f.path.name for f in files]}
        inputs = [{"name": f.path.name, "bytes": f.path.stat().st_size, "tokens": f.count, "format": f.kind}
                  for f in files]
        tokenizer = {"kind": "transformers", "source": str(tokenizer_dir), "eos_token": tok.eos_token,
                     "bos_id": tok.bos_token_id}
        from shards import __version__

        # eos_separates_documents promises an EOS *after* each document; EOS-first data keeps
        # its delimiter in front (settings.eos_first), as the files hold it.
        return writer.finish(eos_id=bounds.delimiter, eos_separates_documents=bounds.delimiter is not None and
                             not bounds.first, tokenizer=tokenizer, settings=settings, inputs=inputs, stats={},
                             source_bytes=0, tool_version=__version__)


def _load_tokenizer(tokenizer_dir: Path):
    from shards.tokenizer_guard import load_tokenizer  # lazy: transformers is only needed here

    if not (tokenizer_dir / "tokenizer_config.json").exists() and not (tokenizer_dir / "tokenizer.json").exists():
        raise UsageError(f"--tokenizer {tokenizer_dir}: not a tokenizer directory (e.g. DIR/tokenizer of a dataset, "
                         "or `preprocess --tokenizer-only`)")
    return load_tokenizer(tokenizer_dir, f"--tokenizer {tokenizer_dir}")


def _boundaries(tok, eos_token: str | None, eos_first: bool, files: list[TokenFile], say) -> Boundaries:
    """The delimiter: --eos-token, else the tokenizer's EOS; with --eos-first, its BOS instead when
    that is what the data starts with (llm.c's Llama-3 fineweb.py puts <|begin_of_text|> first)."""
    first = next((int(tokens(f)[0]) for f in files if f.count), None)
    if eos_token is not None:
        delim = tok.get_vocab().get(eos_token)
        if delim is None:
            raise UsageError(f"--eos-token {eos_token!r} is not a token of this tokenizer")
    else:
        delim = tok.eos_token_id
        bos = tok.bos_token_id
        if eos_first and first is not None and first != delim and first == bos:
            delim = bos
            say(f"note: documents begin at the tokenizer's BOS {tok.bos_token!r} (id {bos}), which starts "
                f"{files[0].path.name} (llm.c's Llama-3 layout); --eos-token TEXT names another delimiter")
    if delim is None:
        if eos_first:
            raise UsageError("--eos-first: the tokenizer has no EOS token; name the token that begins each "
                             "document with --eos-token TEXT")
        say("note: the tokenizer has no EOS token, so no document boundaries are known (--eos-token TEXT names one)")
        return Boundaries(None, False)
    text = tok.convert_ids_to_tokens(delim)
    if eos_first and first is not None and first != delim:
        say(f"note: {files[0].path.name} does not start with {text!r} (id {delim}): its first tokens continue a "
            "document that began in an earlier file (llm.c's fineweb.py cuts files inside documents); "
            "they form document 0")
    if not eos_first and first == delim:
        say(f"note: {files[0].path.name} starts with {text!r} (id {delim}), as llm.c's fineweb.py writes (the "
            "delimiter before each document): pass --eos-first to begin each document at it")
    return Boundaries(delim, eos_first)


def _write(files: list[TokenFile], bounds: Boundaries, vocab: int, tokenizer_dir: Path, writer: DatasetWriter,
           progress: Callable[[int], None] | None) -> None:
    carry = np.empty(0, np.int64)  # the current document's tokens so far; it may span files
    for f in files:
        data = tokens(f)
        for a in range(0, f.count, _CHUNK):
            raw = np.asarray(data[a:a + _CHUNK])
            _check_ids(raw, f, a, vocab, tokenizer_dir)
            chunk = np.concatenate((carry, raw.astype(np.int64)))
            n, lengths = split_documents(chunk, bounds)
            if len(lengths):
                writer.add(chunk[:n], lengths)
            carry = chunk[n:]
            while len(carry) >= MAX_DOC:  # no delimiter for a long stretch: cut here
                writer.add(carry[:MAX_DOC], [MAX_DOC])
                carry = carry[MAX_DOC:]
            if progress:
                progress(len(raw))
        del data
    if len(carry):
        writer.add(carry, [len(carry)])


def _check_ids(raw: np.ndarray, f: TokenFile, at: int, vocab: int, tokenizer_dir: Path) -> None:
    """Refuse ids the tokenizer cannot have made, naming the file and where, with the likely cause."""
    if not len(raw) or int(raw.max()) < vocab:
        return
    pos = int(np.argmax(raw >= vocab))
    what = (f"{f.path}: token id {int(raw[pos]):,} at token {at + pos:,} is outside the vocabulary of "
            f"--tokenizer {tokenizer_dir} (ids 0 to {vocab - 1:,})")
    if f.variant is not None:
        hint = f"its llm.c {f.variant.name} header is sound, so these ids come from another tokenizer: pass that one"
    elif (magic := known_magic(f.path)) is not None:
        hint = f"the file starts with llm.c's magic {magic}: read it with --format auto or llmc, not nanogpt"
    else:
        hint = (f"it was read as raw uint16 tokens (nanoGPT's layout), since it does not start with llm.c's magic "
                f"{KNOWN}: is it another tokenizer's data, or not a token file?")
    raise ShardFormatError(f"{what}; {hint}")
