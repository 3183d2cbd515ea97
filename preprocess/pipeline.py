"""One preprocess run: inputs -> tokenizer -> encoding in worker processes -> ordered shards."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


import shards
from preprocess import tokenizer as tk
from preprocess.columnar import check_columns
from preprocess.config import PreprocessConfig
from preprocess.engines import EngineSpec, choose_engine
from preprocess.encoding import Encoding
from preprocess.errors import InputError
from preprocess.inputs import READ_FORMATS, InputFile, Unit, discover, plan_part, plan_sample
from preprocess.journal import FORMAT as JOURNAL_FORMAT
from preprocess.journal import Journal, lock_output, prepare, refuse_inputs_inside
from preprocess.reader import Piece, read_unit
from shards import DatasetWriter, Manifest
from shards.console import duration, human
from shards.lock import DirectoryLock
from shards.space import RERUN, no_space

SKIP_REASONS = ("empty", "whitespace", "bad_json", "no_text", "no_tokens")


@dataclass(frozen=True, slots=True)
class Summary:
    manifests: dict[str, Manifest]
    stats: dict[str, int]
    seconds: float
    resumed: bool
    already_complete: bool = False
    encode_rate: float = 0.0  # tokens/s from the first batch back from a worker to the last written
    tokenizer_seconds: float = 0.0  # training or importing the tokenizer (0 when resumed)
    encode_seconds: float = 0.0  # from starting the workers to the last shard written
    kept_tokens: int = 0  # tokens an interrupted run had written, kept by this one


def run(cfg: PreprocessConfig, say: Callable[[str], None] = print) -> Summary:
    # A full disk, however the library that met it says so (tokenizers raises a bare Exception,
    # copytree a list of errors), becomes one line naming --out; the journal lets a rerun resume.
    with no_space(cfg.out, after=f"nothing written looks complete: {RERUN}: it resumes"):
        return _run(cfg, say)


def _run(cfg: PreprocessConfig, say: Callable[[str], None]) -> Summary:
    t0 = time.monotonic()
    files, ignored = discover(list(cfg.inputs))
    if ignored and not cfg.quiet:
        say(f"note: ignored {ignored} file(s) in the input directories that are not {READ_FORMATS}")
    # A wrong --text-key must fail before the journal exists, or the corrected command would be
    # refused as "a different command".
    check_columns(files, cfg.text_key)
    if cfg.tokenizer_only:
        return _tokenizer_only(cfg, files, say, t0)
    units = plan_part(files, *cfg.part)
    names = ["train", "valid"] if cfg.valid_fraction > 0 else [None]
    dirs = {n or "dataset": cfg.out / n if n else cfg.out for n in names}
    inputs = [{"name": files[i].name, "bytes": files[i].size} for i in sorted({u.file for u in units})]
    if cfg.overwrite:
        local_tokenizer = [Path(cfg.tokenizer)] if cfg.tokenizer and Path(cfg.tokenizer).exists() else []
        refuse_inputs_inside(cfg.out, [f.path for f in files] + local_tokenizer)
    lock = lock_output(cfg.out)  # one writer per --out, until this run ends however it ends
    try:
        return _run_locked(cfg, files, units, dirs, inputs, say, t0)
    finally:
        lock.release()


def _run_locked(cfg: PreprocessConfig, files: list[InputFile], units: list[Unit], dirs: dict[str, Path],
                inputs: list[dict[str, Any]], say, t0: float) -> Summary:
    mode, state = prepare(cfg.out, list(dirs.values()), cfg.identity(files), cfg.settings(), inputs, cfg.overwrite)
    if mode == "complete":
        manifests = {k: shards.load_manifest(d) for k, d in dirs.items()}
        return Summary(manifests, {}, time.monotonic() - t0, resumed=False, already_complete=True)
    journal = Journal(cfg.out)
    t_tok = time.monotonic()
    if state is None:
        if mode == "restart" and not cfg.quiet:
            say(f"note: {cfg.out} held a run interrupted before it had written anything; starting it over")
        state = _start(cfg, files, journal, say)
    elif state["cursor"] is None and not cfg.quiet:
        say(f"continuing the interrupted run in {cfg.out} with its tokenizer (no tokens had been written yet)")
    t_tok = time.monotonic() - t_tok
    tok_dir = journal.dir / "tokenizer"
    info = tk.TokenizerInfo(**state["tokenizer"])
    spec = EngineSpec.from_json(state["engine"], str(tok_dir))
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
        shutil.copytree(tok_dir, d / shards.TOKENIZER_DIR, dirs_exist_ok=True)
    writers = {k: DatasetWriter(d, vocab_size=info.vocab_size, shard_tokens=cfg.shard_tokens,
                                state=state["writers"].get(k)) for k, d in dirs.items()}
    resumed = state["cursor"] is not None
    kept = sum(w.num_tokens for w in writers.values()) if resumed else 0
    if resumed and not cfg.quiet:
        say(f"resuming the interrupted run in {cfg.out}: the {kept:,} tokens it had written are kept")
    t_enc = time.monotonic()
    run_state = Encoding(cfg, files, units, writers, state, journal, spec, info)
    run_state.encode_all()
    t_enc = time.monotonic() - t_enc
    manifests = _finish(cfg, files, units, writers, state, info)
    journal.remove()
    totals = _totals(state["stats"])
    totals["bytes"] = sum(s["bytes"] for s in state.get("splits", {}).values())
    totals["chars"] = sum(s["chars"] for s in state.get("splits", {}).values())
    return Summary(manifests, totals, time.monotonic() - t0, resumed, encode_rate=run_state.rate(),
                   tokenizer_seconds=t_tok, encode_seconds=t_enc, kept_tokens=kept)


def _start(cfg: PreprocessConfig, files: list[InputFile], journal: Journal, say) -> dict[str, Any]:
    """Save and check the tokenizer (EOS, engine), then write the journal's first entry.

    Everything that can refuse the command happens before that entry exists: a failure or a
    kill up to here leaves only the work directory, which the next run clears (journal.prepare),
    so fixing the command line and running again just works.
    """
    tok_dir = journal.dir / "tokenizer"
    try:
        tokenizer, loaded = _build_tokenizer(cfg, files, tok_dir, say)
        info = tk.TokenizerInfo(**tokenizer)
        eos_id = tk.resolve_eos(tok_dir, info, cfg.eos_token, cfg.no_eos)
        spec = choose_engine(tok_dir, journal.dir, loaded)
    except BaseException:
        journal.remove()
        raise
    if not cfg.quiet:
        say(f"tokenizer: {info.vocab_size:,} tokens; encoding with {spec.describe()}")
    state = {"format": JOURNAL_FORMAT, "identity": cfg.identity(files), "cursor": None, "writers": {}, "stats": {},
             "tokenizer": tokenizer, "eos_id": eos_id, "engine": spec.to_json()}
    journal.save(state)
    return state


def _tokenizer_only(cfg: PreprocessConfig, files: list[InputFile], say, t0: float) -> Summary:
    from preprocess.errors import UsageError

    out = cfg.out.resolve()  # "." has no name to put the temporary directory beside
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {cfg.out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not cfg.overwrite:
            raise UsageError(f"--out {cfg.out}: not empty; choose a new directory or pass --overwrite")
        # --overwrite replaces a tokenizer, never a directory of other things (`--out .` included).
        if not any((out / name).is_file() for name in ("tokenizer_config.json", "tokenizer.json", tk.SP_MODEL)):
            raise UsageError(f"--out {cfg.out}: holds no tokenizer, so --overwrite will not delete it; "
                             "choose a new directory")
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    # The tokenizer is built beside --out and renamed into place: the lock lives beside it too.
    with DirectoryLock(out.parent, "preprocess", name=f".{out.name}.lock"):
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            info, _ = _build_tokenizer(cfg, files, tmp, say)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists():  # replaced only once the new one is complete
            shutil.rmtree(out)
        tmp.rename(out)
    if not cfg.quiet:
        say(f"tokenizer: {info['kind']}, {info['vocab_size']:,} tokens, saved in {out}")
    return Summary({}, {}, time.monotonic() - t0, resumed=False)


def _build_tokenizer(cfg: PreprocessConfig, files: list[InputFile], tok_dir: Path, say):
    """Train or import the tokenizer into tok_dir; its facts (as a dict) and the AutoTokenizer
    loaded on the way, if transformers was needed (None otherwise)."""
    shutil.rmtree(tok_dir, ignore_errors=True)
    tok_dir.mkdir(parents=True)
    loaded = None
    if cfg.vocab_size is not None:
        _train(cfg, files, tok_dir, say)
        kind, source = f"sentencepiece-{cfg.tokenizer_type}", f"trained by preprocess --vocab-size {cfg.vocab_size}"
    else:
        how, loaded = tk.import_tokenizer(cfg.tokenizer, tok_dir)
        kind = "sentencepiece" if how == "sentencepiece-file" else "transformers"
        source = cfg.tokenizer
    info = tk.describe(tok_dir, source, kind, loaded)
    if info.vocab_size > 1 << 32:
        raise InputError(f"tokenizer vocabulary of {info.vocab_size} does not fit uint32 ids")
    return {k: getattr(info, k) for k in info.__slots__}, loaded


# Training time, measured on the 2-core machine README's figures come from (unigram, 8k tokens,
# Japanese): about 2.3 s per MB of sample. Only the order of magnitude is promised.
_TRAIN_SECONDS_PER_MB = 2.3
_HEARTBEAT_SECONDS = 20.0


def _train(cfg: PreprocessConfig, files: list[InputFile], tok_dir: Path, say) -> None:
    """Train the tokenizer on the sample, telling the user it is training and for how long."""
    units = plan_sample(files, cfg.sample_bytes)
    sample = min(cfg.sample_bytes, sum(f.size for f in files))  # compressed inputs: about
    counted: list[int] = [0]
    texts = _sample_texts(files, units, cfg, counted)
    stop = threading.Event()
    if not cfg.quiet:
        guess = max(5.0, sample / 1e6 * _TRAIN_SECONDS_PER_MB)
        say(f"training a {cfg.tokenizer_type} SentencePiece tokenizer (vocab {cfg.vocab_size:,}) on "
            f"{human(sample, 'B')} of the inputs; this may take about {duration(guess)} (roughly "
            f"{_TRAIN_SECONDS_PER_MB:.0f} s per MB of sample; --sample-bytes sets the sample)")
        t0 = time.monotonic()

        def heartbeat() -> None:
            while not stop.wait(_HEARTBEAT_SECONDS):
                read = f", {human(counted[0], 'B')} of text read" if counted[0] < sample else ""
                say(f"  still training the tokenizer: {duration(time.monotonic() - t0)} so far{read}")

        threading.Thread(target=heartbeat, name="preprocess-heartbeat", daemon=True).start()
    try:
        tk.train_sentencepiece(texts, cfg.vocab_size, tok_dir, model_type=cfg.tokenizer_type,
                               character_coverage=cfg.character_coverage)
    finally:
        stop.set()
    if not cfg.quiet:
        say(f"  tokenizer trained in {duration(time.monotonic() - t0)}")


def _sample_texts(files: list[InputFile], units: list[Unit], cfg: PreprocessConfig,
                  counted: list[int]) -> Iterator[str]:
    """The tokenizer's training texts, up to --sample-bytes; counted[0]: the bytes read so far."""
    budget = cfg.sample_bytes
    for piece in _pieces(files, units, cfg):
        yield piece.text
        budget -= piece.nbytes
        counted[0] += piece.nbytes
        if budget <= 0:
            return


def _pieces(files: list[InputFile], units: list[Unit], cfg: PreprocessConfig) -> Iterator[Piece]:
    for i in range(len(units)):
        for item in read_unit(files, units, i, text_key=cfg.text_key, errors=cfg.errors,
                              max_doc_bytes=cfg.max_doc_bytes):
            if isinstance(item, Piece):
                yield item


def _finish(cfg, files, units, writers, state, info) -> dict[str, Manifest]:
    stats = state["stats"]
    used = sorted({u.file for u in units})
    inputs = []
    for i in used:
        s = stats.get(str(i), {})
        inputs.append({"name": files[i].name, "bytes": files[i].size,
                       **{k: int(s.get(k, 0)) for k in ("documents", "replaced", "nul_bytes", "split", *SKIP_REASONS)}})
    # Checked for every dataset before the first manifest is written: a failed run must not
    # leave DIR/train looking complete beside an unusable DIR/valid.
    part = cfg.part[1] > 1  # one part of many may hold nothing (e.g. fewer files than parts)
    for name, w in writers.items():
        if w.num_tokens == 0 and not part:
            if name == "valid":
                raise InputError(f"--valid-fraction {cfg.valid_fraction} put no document into {cfg.out}/valid; "
                                 "raise it, or preprocess a validation file with its own run")
            where = cfg.out / "train" if name == "train" else cfg.out
            raise InputError(f"{where}: no tokens to write: every document was empty or skipped; "
                             "check the input files (and --text-key for .jsonl)")
    tokenizer = {"kind": info.kind, "source": info.source, "eos_token": info.eos_token, "bos_id": info.bos_id}
    manifests = {}
    totals = _totals(stats)
    for name, w in writers.items():
        settings = dict(cfg.settings())
        if name != "dataset":
            settings["split"] = name
        split = state.get("splits", {}).get(name, {"bytes": 0, "chars": 0})
        # Reading counts cover the whole run (both splits); characters are this dataset's own.
        m_stats = {"characters": split["chars"], **{k: totals[k] for k in ("replaced", "nul_bytes", "split", *SKIP_REASONS)}}
        manifests[name] = w.finish(
            eos_id=state["eos_id"] if state["eos_id"] is not None else info.eos_id,
            eos_separates_documents=state["eos_id"] is not None, tokenizer=tokenizer, settings=settings,
            inputs=inputs, stats=m_stats, source_bytes=split["bytes"], tool_version=shards.__version__,
            allow_empty=part)
    return manifests


def _totals(stats: dict[str, dict[str, int]]) -> dict[str, int]:
    total: Counter = Counter()
    for s in stats.values():
        total.update(s)
    keys = ("documents", "bytes", "chars", "replaced", "nul_bytes", "split", *SKIP_REASONS)
    return {k: int(total.get(k, 0)) for k in keys}


def report(summary: Summary, cfg: PreprocessConfig) -> str:
    """The end-of-run summary, for people."""
    if summary.already_complete:
        lines = [f"{cfg.out}: already complete for this command; nothing to do (--overwrite rebuilds it)"]
        for name, m in summary.manifests.items():
            lines.append(f"  {name}: {m.num_tokens:,} tokens, {m.num_documents:,} documents, fingerprint {m.fingerprint}")
        return "\n".join(lines)
    s = summary.stats
    tokens = sum(m.num_tokens for m in summary.manifests.values())
    secs = max(summary.seconds, 1e-9)
    now = tokens - summary.kept_tokens  # what this run encoded: the speeds count only these
    head = f"wrote {cfg.out}"
    if summary.resumed:
        head += f" (resumed: {summary.kept_tokens:,} tokens kept from the interrupted run, {now:,} encoded now)"
    lines = [head]
    for name, m in summary.manifests.items():
        lines.append(f"  {name}: {m.num_tokens:,} tokens, {m.num_documents:,} documents, {len(m.shards)} shard(s), "
                     f"{m.dtype.name}; fingerprint {m.fingerprint}")
    chars_per_token = s["chars"] / tokens if tokens else 0.0
    lines.append(f"  documents {s['documents']:,}  tokens {tokens:,}  source {human(s['bytes'], 'B')}  "
                 f"{chars_per_token:.2f} chars/token")
    phases = ""
    if summary.tokenizer_seconds >= 1:
        phases = (f" (tokenizer {duration(summary.tokenizer_seconds)}, "
                  f"encoding and writing {duration(summary.encode_seconds)})")
    lines.append(f"  time {duration(secs)}{phases}")
    workers = f"{cfg.workers} worker process{'es' if cfg.workers != 1 else ''}" if cfg.workers else "in this process"
    speed = f"  speed: {human(now / secs)} tokens/s over the whole run"
    if summary.encode_rate:
        speed += (f"; {human(summary.encode_rate)} tokens/s while encoding ({workers}; from the first block back to "
                  "the last written, without start-up)")
    lines.append(speed)
    skipped = ", ".join(f"{k} {s[k]:,}" for k in SKIP_REASONS if s[k]) or "none"
    lines.append(f"  replaced characters {s['replaced']:,}  NUL bytes removed {s['nul_bytes']:,}  "
                 f"split documents {s['split']:,}  skipped: {skipped}")
    return "\n".join(lines)
