"""Getting a tokenizer into DIR/tokenizer: train SentencePiece, convert a .model, or load one.

Whatever the source, the saved directory loads with `transformers.AutoTokenizer` and is the
single source of truth: the ids written to the shards are what `AutoTokenizer.encode(doc,
add_special_tokens=False)` returns (see `preprocess.engines`). Trained and converted
SentencePiece models are written without transformers (`preprocess.spm_model`), and the facts
of a plain directory are read from its files (`preprocess.tokenizer_dir`): transformers is
imported only for a tokenizer directory of another kind or a hub name.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from preprocess import spm_model
from preprocess.errors import TokenizerError
from preprocess.tokenizer_dir import FILES, plain

SP_MODEL = "tokenizer.model"  # a SentencePiece model kept beside tokenizer.json (fast path)
SPECIAL = {"unk": "<unk>", "bos": "<s>", "eos": "</s>", "pad": "<pad>"}
# SentencePiece skips training sentences longer than this (bytes); longer documents are cut.
_SP_MAX_SENTENCE = 16384
# SentencePiece's trained model depends on how many threads share the work (each sums its part
# of the statistics), so it is fixed here, never taken from --workers or the machine's cores:
# the same text gives the same tokenizer, hence the same fingerprint, everywhere.
TRAIN_THREADS = 16


@dataclass(frozen=True, slots=True)
class TokenizerInfo:
    """What the pipeline and the manifest need to know about the saved tokenizer."""

    kind: str
    source: str
    vocab_size: int
    eos_id: int | None
    eos_token: str | None
    bos_id: int | None


def train_sentencepiece(texts: Iterable[str], vocab_size: int, out_dir: Path, *,
                        model_type: str = "unigram", character_coverage: float = 0.9995,
                        threads: int = TRAIN_THREADS) -> None:
    """Train a SentencePiece model on `texts` and save it as a transformers tokenizer in out_dir.

    Byte fallback: a character never seen in training becomes its UTF-8 bytes, never <unk>.
    Identity normalization and no whitespace folding, so decode(encode(text)) == text.
    The model depends on `threads` (see TRAIN_THREADS), not on how many cores run them.
    Unigram scores are rounded to multiples of 2**-SCORE_BITS (see preprocess.spm_exact).
    """
    import sentencepiece as spm

    failed: list[BaseException] = []

    def sentences():
        try:
            for t in texts:
                data = t.encode("utf-8")
                for i in range(0, len(data), _SP_MAX_SENTENCE):
                    yield data[i:i + _SP_MAX_SENTENCE].decode("utf-8", "ignore")
        except BaseException as e:  # reading the sample failed (a bad input, Ctrl-C): kept for below
            failed.append(e)
            raise

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences(), model_writer=model, model_type=model_type,
            vocab_size=vocab_size, byte_fallback=True, character_coverage=character_coverage,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=False, split_digits=True, allow_whitespace_only_pieces=True,
            # "<" always a piece of its own. Control pieces ("</s>") and byte pieces ("<0x41>") all
            # start with "<", and transformers' Unigram matches them in text whenever one of their
            # characters has no piece (its unknown-character penalty is below any score): text
            # spelling "</s>" became EOS and "<0x41>" decoded as "A". Isolated, they never match,
            # and SentencePiece itself splits the same way, so its fast engine stays exact.
            user_defined_symbols=["<"],
            max_sentence_length=_SP_MAX_SENTENCE, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
            unk_piece=SPECIAL["unk"], bos_piece=SPECIAL["bos"], eos_piece=SPECIAL["eos"],
            pad_piece=SPECIAL["pad"], num_threads=threads,
            minloglevel=2)
    except RuntimeError as e:
        if failed:  # SentencePiece reports an error of the iterator as a RuntimeError holding a traceback
            raise failed[0] from None
        raise TokenizerError(_training_error(str(e), vocab_size, character_coverage)) from None
    if failed:  # never trained on part of the sample
        raise failed[0]
    proto = spm_model.model_proto()
    proto.ParseFromString(model.getvalue())
    if proto.trainer_spec.model_type == spm_model.UNIGRAM:
        spm_model.quantize(proto)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SP_MODEL).write_bytes(proto.SerializeToString())
    spm_model.write_transformers_files(proto, out_dir)


def _training_error(message: str, vocab_size: int, coverage: float) -> str:
    """SentencePiece's messages name its own flags; say it in this command's terms."""
    last = message.strip().splitlines()[-1] if message.strip() else "unknown error"
    if m := re.search(r"required_chars\. (\d+) vs (\d+)", last):
        return (f"--vocab-size {vocab_size} is too small: {m.group(2)} pieces are needed for the characters at "
                f"--character-coverage {coverage} plus special tokens; raise --vocab-size or lower "
                "--character-coverage (rarer characters then become bytes)")
    if m := re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", last):
        return (f"--vocab-size {vocab_size} is more than this text supports (at most {m.group(2)}); "
                "lower it or train on more text (--sample-bytes)")
    if "No valid" in last or "empty" in last.lower():
        return f"no text to train the tokenizer on ({last})"
    return f"SentencePiece training failed: {last}"


def sentencepiece_to_transformers(model_path: Path, out_dir: Path) -> None:
    """Write tokenizer.json + tokenizer_config.json for a SentencePiece model (offline), and keep
    the model beside them."""
    proto = spm_model.read_proto(model_path)
    if spm_model.buildable(proto):
        spm_model.write_transformers_files(proto, out_dir)
    else:  # other normalizers (NFKC, dummy prefix, ...): transformers' converter knows them
        _convert_with_transformers(proto, out_dir, model_path)
    if Path(model_path).resolve() != (out_dir / SP_MODEL).resolve():
        shutil.copyfile(model_path, out_dir / SP_MODEL)


def _convert_with_transformers(proto, out_dir: Path, model_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SpmConverter

    if proto.trainer_spec.model_type == spm_model.BPE:
        # A dict makes transformers build a real BPE (merges ranked by piece score); a scored
        # list would make a Unigram model, which splits text unlike SentencePiece's BPE.
        vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    else:
        never = (spm_model.UNKNOWN, spm_model.CONTROL, spm_model.BYTE)
        vocab = [(p.piece, spm_model.NEVER if p.type in never else p.score) for p in proto.pieces]
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab)
    if backend is None:
        raise TokenizerError(f"{model_path}: unsupported SentencePiece model type")
    # split_special_tokens: text spelling "</s>" is encoded as text, like SentencePiece does,
    # so a corpus can never inject a document boundary.
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, split_special_tokens=True,
                                  **spm_model.special_tokens(proto))
    tok.save_pretrained(str(out_dir))


def import_tokenizer(source: str, out_dir: Path) -> tuple[str, object | None]:
    """Save the tokenizer named by `source` (directory, .model file or hub name) into out_dir.

    Returns the kind of source ("sentencepiece-file", "directory", "hub") and the AutoTokenizer
    loaded on the way, if one was (None when transformers was not needed).
    """
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".model":
            raise TokenizerError(f"--tokenizer {source}: a file must be a SentencePiece .model; "
                                 "for a transformers tokenizer pass its directory")
        sentencepiece_to_transformers(path, out_dir)
        return "sentencepiece-file", None
    if path.is_dir():
        return "directory", _import_directory(path, source, out_dir)
    if path.suffix == ".model" or os.sep in source and not _looks_like_hub_id(source):
        raise TokenizerError(f"--tokenizer {source}: no such file or directory")
    _load_hub(source).save_pretrained(str(out_dir))
    from shards.tokenizer_guard import check_inert

    what = f"--tokenizer {source}"
    check_inert(out_dir, what)
    # The saved directory is the truth from here on, not the object the hub load made: what
    # transformers does on load (and save_pretrained may not write back) would differ.
    return "hub", None if plain(out_dir) is not None else _load_guarded(out_dir, what)


def _import_directory(path: Path, source: str, out_dir: Path):
    """Copy a tokenizer directory into out_dir, checked inert first; the loaded AutoTokenizer,
    or None for a plain directory (copied as it is, read without transformers)."""
    from shards.tokenizer_guard import check_inert

    what = f"--tokenizer {source}"
    check_inert(path, what)  # before anything reads it: no code, no files outside it
    if plain(path) is not None:
        for name in sorted(FILES):
            if (path / name).is_file():
                shutil.copyfile(path / name, out_dir / name)
        return None
    tok = _load_guarded(path, what)
    tok.save_pretrained(str(out_dir))
    # Keep the source's own bytes for every file transformers writes: the tokenizer's hash
    # (and so the fingerprint) then matches a dataset made with the same directory.
    for saved in list(out_dir.iterdir()):
        original = path / saved.name
        if original.is_file():
            shutil.copyfile(original, saved)
    sp = path / SP_MODEL
    if sp.is_file() and not (out_dir / SP_MODEL).exists():
        shutil.copyfile(sp, out_dir / SP_MODEL)
    return _load_guarded(out_dir, what)  # the saved directory is the truth from here on


def _load_guarded(path: Path, what: str):
    """shards.tokenizer_guard.load_tokenizer (inert, offline), a failure to load worded as this
    command's usage error (the refusal of unsafe code stays what it is)."""
    from shards.errors import ShardFormatError
    from shards.tokenizer_guard import UnsafeTokenizerError, load_tokenizer

    try:
        return load_tokenizer(path, what)
    except UnsafeTokenizerError:
        raise
    except ShardFormatError as e:
        reason = str(e).removeprefix(f"{what}: ").removeprefix("cannot load the tokenizer ")
        raise TokenizerError(f"{what}: transformers cannot load it {reason}") from None


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") <= 1 and not name.startswith((".", "/", "~"))


def _load_auto(name: str, source: str, **kwargs):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TokenizerError(f"--tokenizer {source}: transformers cannot load it ({first})") from None


def _load_hub(name: str):
    """A hub tokenizer: from the local cache, else online, failing fast when offline."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError):
        pass
    hint = ("pass a local tokenizer directory or a SentencePiece .model file instead, "
            "or train one with --vocab-size N")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise TokenizerError(f"--tokenizer {name}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {hint}")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        # transformers retries for most of a minute when offline; ask the network once, briefly.
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=5).close()
    except OSError:
        raise TokenizerError(
            f"--tokenizer {name}: not a local path, not in the Hugging Face cache, and the hub "
            f"({endpoint.hostname}) cannot be reached; {hint}") from None
    return _load_auto(name, name)


def describe(tok_dir: Path, source: str, kind: str, loaded=None) -> TokenizerInfo:
    """The facts the pipeline needs, from the files of a plain directory, else from the loaded
    AutoTokenizer (`loaded`, or loaded here)."""
    facts = plain(tok_dir)
    if facts is not None:
        return TokenizerInfo(kind=kind, source=source, vocab_size=facts.vocab_size, eos_id=facts.ids.get("eos_token"),
                             eos_token=facts.tokens.get("eos_token"), bos_id=facts.ids.get("bos_token"))
    from shards.vocab import vocab_size

    tok = loaded if loaded is not None else load_saved(tok_dir)
    return TokenizerInfo(kind=kind, source=source, vocab_size=vocab_size(tok), eos_id=tok.eos_token_id,
                         eos_token=tok.eos_token, bos_id=tok.bos_token_id)


def load_saved(tok_dir: Path):
    from shards.tokenizer_guard import load_tokenizer

    return load_tokenizer(tok_dir, str(tok_dir))


def resolve_eos(tok_dir: Path, info: TokenizerInfo, eos_token: str | None, no_eos: bool) -> int | None:
    """The id appended after each document, or None with --no-eos."""
    if no_eos:
        if eos_token is not None:
            raise TokenizerError("--no-eos and --eos-token contradict each other; give one")
        return None
    if eos_token is not None:
        facts = plain(tok_dir)
        vocab = facts.vocab if facts is not None else load_saved(tok_dir).get_vocab()
        if eos_token not in vocab:
            raise TokenizerError(f"--eos-token {eos_token!r} is not a token of this tokenizer's vocabulary")
        return vocab[eos_token]
    if info.eos_id is None:
        raise TokenizerError(
            f"tokenizer {info.source} has no EOS token: pass --eos-token TEXT (a token of its "
            "vocabulary) to separate documents, or --no-eos to join them with nothing")
    return info.eos_id
