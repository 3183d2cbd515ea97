"""What the log lines measure: throughput over training time only, and the losses since the last line.

Throughput pauses around evaluation and checkpoints (they get their own lines and durations),
so tokens/s, data wait and MFU describe training steps alone. LossWindow sums step losses on
the device (no GPU-to-CPU sync per step) and remembers, per step, whether the loss was finite;
the loop looks at it only on log and checkpoint steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class Reading:
    seconds: float  # training time in the window (pauses excluded)
    tokens: int
    data_wait: float  # seconds of it spent waiting for batches

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def wait_share(self) -> float:
        return self.data_wait / self.seconds if self.seconds > 0 else 0.0


class Throughput:
    """Training time, tokens and data wait since the last `take()`, with pauses left out."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self._start = clock()
        self._paused = 0.0
        self._wait = 0.0
        self._tokens = 0

    @contextmanager
    def paused(self) -> Iterator[Callable[[], float]]:
        """`with meter.paused() as took:` ... `took()` is the pause's duration in seconds."""
        t0 = self.clock()
        box = [0.0]
        try:
            yield lambda: box[0]
        finally:
            box[0] = self.clock() - t0
            self._paused += box[0]

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Time spent waiting for the next batch (counted as training time, and as data wait)."""
        t0 = self.clock()
        try:
            yield
        finally:
            self._wait += self.clock() - t0

    def add(self, tokens: int) -> None:
        self._tokens += tokens

    def take(self) -> Reading:
        """The window's reading; the next window starts now."""
        now = self.clock()
        reading = Reading(max(now - self._start - self._paused, 0.0), self._tokens, self._wait)
        self._start, self._paused, self._wait, self._tokens = now, 0.0, 0.0, 0
        return reading


class LossWindow:
    """This process's step losses since the last log line, kept on the device.

    `add` costs no synchronization. `first_bad(step)` synchronizes once and returns the first
    step of the unchecked ones whose loss (or gradient norm) was not finite, agreed by all
    processes, or None.
    """

    def __init__(self, device: torch.device, total: float = 0.0, steps: int = 0):
        self.total = torch.tensor(total, dtype=torch.float32, device=device)
        self.steps = steps
        self._flags: list[torch.Tensor] = []  # one 0-d bool per unchecked step

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
        """`grad_norm` None: an infinite norm is expected now and then (fp16's scaler skips those)."""
        ok = torch.isfinite(loss)
        if grad_norm is not None:
            ok = ok & torch.isfinite(grad_norm)
        self.total += loss
        self.steps += 1
        self._flags.append(ok)

    def first_bad(self, step: int, all_reduce: Callable[[torch.Tensor], None] | None = None) -> int | None:
        """Check the steps added since the last check; `step` is the number of the newest (1-based)."""
        if not self._flags:
            return None
        flags = torch.stack(self._flags).to(torch.int32)
        if all_reduce is not None:
            all_reduce(flags)  # MIN over processes: one bad rank stops everyone at the same step
        flags = flags.cpu()
        self._flags.clear()
        bad = (flags == 0).nonzero()
        if len(bad) == 0:
            return None
        return step - len(flags) + 1 + int(bad[0])

    def mean(self) -> torch.Tensor:
        return self.total / max(self.steps, 1)

    def saved(self) -> tuple[float, int]:
        return float(self.total.item()), self.steps

    def reset(self) -> None:
        self.total.zero_()
        self.steps = 0
        self._flags.clear()
