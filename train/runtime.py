"""Runtime facts apart from user settings: device, ranks, precision, CPU threads, signals."""

from __future__ import annotations

import os
import signal
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from shards.errors import UsageError


@dataclass(frozen=True, slots=True)
class Runtime:
    device: torch.device
    rank: int
    world_size: int
    local_rank: int
    amp_dtype: torch.dtype | None  # None: full fp32
    control: object | None = None  # a gloo group for small CPU messages between ranks
    threads: int = 1  # torch intra-op threads of this process

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def default_threads() -> int:
    """Intra-op threads that do not oversubscribe the machine: this process's share of the cores
    it may run on, divided among the training processes of this node (torchrun's
    LOCAL_WORLD_SIZE), at least 1.

    DataLoader workers are not counted: each runs one torch thread and spends almost all its
    time waiting (reading a batch costs microseconds next to a training step). Measured with
    benchmarks/bench_threads.py on 2 idle cores with 1 worker, 2 threads trained 1.7x faster than
    1; on a machine kept busy by other work, 1 thread was faster (then pass --threads 1). The
    number is fixed for a run's settings and machine, never taken from the load, because the
    thread count can change floating-point sums and a resumed run must repeat them.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, cores // local)


def setup(device: str, precision: str, *, threads: int | None = None) -> Runtime:
    """Read torchrun's environment, pick the device, precision and CPU threads, start the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    n_threads = threads or default_threads()
    torch.set_num_threads(n_threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if device == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        # TF32 matmuls: free speed on Ampere and newer, precision ample for training.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        dev = torch.device("cpu")
    control = None
    if world_size > 1:
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                                 device_id=dev if dev.type == "cuda" else None)
        # Asking every step whether to stop must not wait for the GPU: a CPU-side group answers.
        control = torch.distributed.new_group(backend="gloo")
    return Runtime(dev, rank, world_size, local_rank, _amp_dtype(precision, dev), control, n_threads)


def _amp_dtype(precision: str, dev: torch.device) -> torch.dtype | None:
    if precision == "fp32" or (precision == "auto" and dev.type != "cuda"):
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def teardown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class StopSignal:
    """SIGTERM or Ctrl-C asks the loop to stop after the current step; a second Ctrl-C forces it.

    The handler only records the signal: printing from a signal handler can land in the middle
    of another write to the same stream and fail ("reentrant call"). The loop says it (`news`).
    """

    def __init__(self) -> None:
        self.requested: int | None = None  # the signal number
        self._told = False
        self._old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = signum

    def news(self) -> str | None:
        """The message about a signal received since the last call, once."""
        if self.requested is None or self._told:
            return None
        self._told = True
        return (f"{signal.Signals(self.requested).name}: finishing this step, saving a checkpoint, then exiting "
                "(Ctrl-C again to abort without saving)")

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def ignore_signals_in_worker(_worker_id: int) -> None:
    """DataLoader worker_init_fn: Ctrl-C reaches the whole process group, but the workers must
    outlive the main process's last step and checkpoint; the DataLoader shuts them down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def agree(flag: bool, rt: Runtime) -> bool:
    """True on every rank when any rank says True (so all ranks stop at the same step)."""
    if not rt.distributed:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0])  # on the CPU, through the gloo group: no GPU sync
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=rt.control)
    return bool(t.item())
