"""The encoding stage of a preprocess run: blocks out to worker processes, ids back in order,
into the shard writers, with the journal kept up to date for resuming."""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

import shards
from preprocess import worker
from preprocess.split import in_valid, text_hasher
from preprocess.errors import InputError
from preprocess.inputs import unit_bytes
from preprocess.reader import Cursor, Task, tasks
from shards.console import Progress

# Bytes of text per worker task, at most. Large blocks amortize the main process's cost per
# task (1 MiB ran 1.4x faster than 64 KiB on 2 cores); much larger ones slow the workers down
# (their id lists outgrow the caches), and every worker needs several blocks.
BATCH_BYTES = 1 << 20


class InProcess:
    """The executor interface for --workers 0: encode in this process (debugging, tiny inputs)."""

    class _Done:
        def __init__(self, value):
            self.value = value

        def result(self):
            return self.value

    def __init__(self, initargs):
        worker.init(*initargs, in_worker=False)

    def submit(self, fn, *args):
        return self._Done(fn(*args))

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def _kill_workers(pool) -> None:
    """Kill every worker a broken pool still has.

    CPython 3.11's executor can spawn a replacement worker while its manager thread tears the
    broken pool down (a submit racing it); nothing terminates that worker, it blocks sending its
    result back, the call queue's feeder blocks writing to it, and the interpreter then waits for
    them forever at exit (seen here: a `preprocess` still alive 90 minutes after it printed the
    error). With every worker gone, the feeder's pipe breaks and exit proceeds.
    """
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.kill()


class Encoding:
    """The ordered, bounded pipeline: cut blocks -> workers -> put back in order -> write.

    The main process only cuts the input into blocks of whole lines and writes what comes
    back, in input order; with `window` blocks in flight the workers never wait and memory
    stays bounded. A document longer than --max-doc-bytes arrives as several piece blocks,
    joined here (`carry`). Progress becomes durable (`_checkpoint`) only between documents.
    """

    def __init__(self, cfg, files, units, writers, state, journal, spec, info):
        self.cfg, self.files, self.units, self.writers = cfg, files, units, writers
        self.state, self.journal, self.spec, self.info = state, journal, spec, info
        self.carry: list = []  # Encoded pieces of a document whose last piece is still to come
        self.carry_hash = None  # with --valid-fraction: the hash of their text (the text is not kept)
        self.last_save = time.monotonic()
        # Steady-state throughput: counted from the first block written, so worker start-up
        # (imports, loading the tokenizer) is left out. [t_first, t_last, tokens after the first]
        self.clock: list[float] = []
        self.dtype = shards.dtype_for_vocab(info.vocab_size)
        total = sum(unit_bytes(files[u.file], u) for u in units)
        cursor = state["cursor"]
        self.resume = Cursor(**cursor) if cursor else None
        # A resumed run's bar starts where the interrupted one stopped: the units it finished
        # now, the part of the current one when reading gets there (see _progress).
        done = sum(unit_bytes(files[u.file], u) for u in units[:self.resume.unit]) if self.resume else 0
        self.bar = Progress(total, "B", label="preprocess", enabled=False if cfg.quiet else None, initial=done)

    def encode_all(self) -> None:
        cfg = self.cfg
        settings = worker.Settings(self.files, cfg.text_key, cfg.errors, cfg.max_doc_bytes, self.state["eos_id"],
                                   self.dtype.str, self.info.vocab_size, cfg.valid_fraction)
        initargs = (self.spec, settings)
        if cfg.workers == 0:
            pool = InProcess(initargs)
        else:
            # An executor, not multiprocessing.Pool: a worker killed (say by the OOM killer)
            # breaks it with an error, where a Pool would wait for that task forever.
            pool = ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=worker.init, initargs=initargs)
        window = 2 * max(cfg.workers, 1) + 2  # blocks in flight: workers never idle, memory bounded
        pending: deque = deque()
        try:
            for block in self._blocks():
                pending.append((block, pool.submit(worker.process, block)))
                while len(pending) >= window:
                    self._write(*pending.popleft())
            while pending:
                self._write(*pending.popleft())
        except BrokenProcessPool:
            _kill_workers(pool)
            raise InputError("a tokenizer worker process died (out of memory? killed?); run the same command "
                             "again to resume, with fewer --workers if memory is short") from None
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            self.bar.close()
        self._checkpoint(force=True)

    def _blocks(self) -> Iterator[Task]:
        start = self.resume
        first = start.unit if start else 0
        # About 8 blocks per worker on small inputs, so all of them get work; the output never
        # depends on the block size (blocks only group whole lines or rows).
        size = min(BATCH_BYTES, max(64 << 10, self.bar.total // (8 * max(self.cfg.workers, 1))))
        for i in range(first, len(self.units)):
            yield from tasks(self.files, self.units, i, text_key=self.cfg.text_key,
                             max_doc_bytes=self.cfg.max_doc_bytes, block_bytes=size,
                             resume=start if i == first else None, progress=self._progress)

    def _progress(self, n: int, resumed: bool) -> None:
        if resumed:  # done by the interrupted run: part of the total, not of this run's rate or ETA
            self.bar.initial += n
        self.bar.advance(n)

    def rate(self) -> float:
        if len(self.clock) < 3 or self.clock[1] <= self.clock[0]:
            return 0.0
        return self.clock[2] / (self.clock[1] - self.clock[0])

    def _write(self, block: Task, result) -> None:
        out = result.result()
        now = time.monotonic()
        self.clock = [self.clock[0], now, self.clock[2] + len(out.tokens)] if self.clock else [now, now, 0]
        for key, n in out.stats.items():
            self._count(block.file, key, n)
        if block.whole:
            self._add(out, block.file)
        else:
            if out.piece_text is not None:
                if self.carry_hash is None:
                    self.carry_hash = text_hasher()
                self.carry_hash.update(out.piece_text)
                out.piece_text = None
            self.carry.append(out)
            if block.last:
                self._add(self._joined(), block.file)
                self._count(block.file, "split")
        if block.whole or block.last:
            self.state["cursor"] = block.cursor().to_json()
            self._checkpoint()

    def _joined(self) -> worker.Encoded:
        """The pieces of one long document as one document; its side from the hash of all its text."""
        pieces, self.carry = self.carry, []
        digest, self.carry_hash = self.carry_hash, None
        valid = digest is not None and in_valid(digest.digest(), self.cfg.valid_fraction)
        total = lambda attr: np.array([sum(int(getattr(p, attr).sum()) for p in pieces)], dtype=np.int64)
        return worker.Encoded(np.concatenate([p.tokens for p in pieces]), total("lengths"),
                              np.array([valid]), total("nbytes"), total("nchars"))

    def _add(self, out: worker.Encoded, file: int) -> None:
        lengths, tokens = out.lengths, out.tokens
        empty = lengths == 0  # e.g. text the tokenizer maps to nothing, with --no-eos
        self._count(file, "documents", int((~empty).sum()))
        if empty.any():
            self._count(file, "no_tokens", int(empty.sum()))
        keep_docs = {"train": ~empty & ~out.valid, "valid": ~empty & out.valid} if "valid" in self.writers \
            else {"dataset": ~empty}
        splits = self.state.setdefault("splits", {})
        for name, keep in keep_docs.items():
            if keep.any():
                if keep.all():
                    self.writers[name].add(tokens, lengths)
                else:
                    self.writers[name].add(tokens[np.repeat(keep, lengths)], lengths[keep])
                split = splits.setdefault(name, {"bytes": 0, "chars": 0})
                split["bytes"] += int(out.nbytes[keep].sum())
                split["chars"] += int(out.nchars[keep].sum())
        self.bar.advance(0, tok=len(tokens))

    def _count(self, f: int, key: str, n: int = 1) -> None:
        if n:
            s = self.state["stats"].setdefault(str(f), {})
            s[key] = s.get(key, 0) + n

    def _checkpoint(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_save < self.cfg.checkpoint_seconds:
            return
        self.state["writers"] = {k: w.checkpoint() for k, w in self.writers.items()}
        self.journal.save(self.state)
        self.last_save = now

