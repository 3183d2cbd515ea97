"""Terminal plumbing shared by the three commands: one-line errors and a progress bar."""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from shards.errors import ShardFormatError, UsageError
from shards.space import RERUN  # light: os, shutil and shards.errors only


# A dataset directory argument of the shards commands: click checks nothing, the readers do
# (load_manifest's one-line messages say what is wrong, a missing directory included).
DIR = click.Path(path_type=Path, file_okay=True, dir_okay=True)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn the typed errors of user mistakes into one line on stderr and an exit code.

    Bad data (ShardFormatError, unreadable files) exits 1, bad usage (UsageError) exits 2,
    Ctrl-C exits 130. Anything else is a bug and keeps its traceback.
    """
    try:
        yield
    except UsageError as e:
        _fail(str(e), 2)
    except ShardFormatError as e:
        _fail(str(e), 1)
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        if e.errno == errno.ENOSPC:
            _fail(f"{where}no space left on device; nothing written looks complete: {RERUN}", 1)
        _fail(f"{where}{e.strerror or e}", 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (decimal prefixes, as token counts are usually quoted)."""
    for prefix in ("", "k", "M", "G", "T"):
        if abs(n) < 1000 or prefix == "T":
            return f"{n:.3g}{prefix}{unit}" if prefix or not float(n).is_integer() else f"{int(n)}{unit}"
        n /= 1000
    return f"{n}{unit}"


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A one-line progress bar on stderr, drawn only on a terminal and at most 5 times a second.

    `advance(n, **rates)` adds n to the main counter and, for each keyword, to a named counter
    whose rate is shown (e.g. tokens=...). `note(text)` sets a free-form suffix. `initial` is
    work done before this process started (a resumed run): it counts towards the total, never
    towards the rate or the ETA. Rates appear after the first second: the first read of a fast
    disk would otherwise promise an absurd speed.

    `with Progress(...) as bar:` closes the bar on leaving the block, on an error too, so that
    an `error:` line printed after it starts a line of its own.
    """

    RATE_AFTER = 1.0  # seconds before a rate (and so an ETA) is shown

    def __init__(self, total: int | None, unit: str, *, label: str = "", enabled: bool | None = None,
                 initial: int = 0):
        self.total, self.unit, self.label = total, unit, label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.done = self.initial = initial
        self.counters: dict[str, int] = {}
        self.suffix = ""
        self.t0 = time.monotonic()
        self._last = 0.0
        self._width = 0

    def advance(self, n: int = 0, **counters: int) -> None:
        self.done += n
        for k, v in counters.items():
            self.counters[k] = self.counters.get(k, 0) + v
        self._draw()

    def note(self, text: str) -> None:
        self.suffix = text
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        elapsed = now - self.t0
        parts = [self.label] if self.label else []
        graphic = None
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = int(frac * 20)
            graphic = len(parts)
            parts.append(f"[{'#' * bar}{'.' * (20 - bar)}] {frac:4.0%}")
        this_session = self.done - self.initial
        timed = elapsed >= self.RATE_AFTER
        rate = f" {human(this_session / elapsed, self.unit)}/s" if timed else ""
        parts.append(f"{human(self.done, self.unit)}{rate}")
        if timed:
            parts += [f"{human(v / elapsed)} {k}/s" for k, v in self.counters.items()]
        if self.total and this_session > 0 and timed:
            parts.append(f"ETA {duration(elapsed * (self.total - self.done) / this_session)}")
        if self.suffix:
            parts.append(self.suffix)
        cols = _columns()
        line = "  ".join(parts)
        if len(line) >= cols and graphic is not None:  # a narrow terminal: the numbers matter more
            parts[graphic] = f"{frac:.0%}"
            line = "  ".join(parts)
        line = line[: cols - 1]
        sys.stderr.write("\r" + line + " " * max(0, self._width - len(line)))
        sys.stderr.flush()
        self._width = len(line)

    def above(self, write) -> None:
        """Run `write` (which prints a line) with the bar cleared, then draw the bar again."""
        if self.enabled and self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            sys.stderr.flush()
            self._width = 0
        write()
        self._draw(force=True)

    def close(self) -> None:
        if self.enabled and self._width:
            self._draw(force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._width = 0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except OSError:
        return 120
