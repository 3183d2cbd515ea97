"""Runtime facts apart from user settings: device, ranks, precision, seeds, RNG state, signals."""

from __future__ import annotations

import os
import random
import signal
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
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


def setup(device: str, precision: str) -> Runtime:
    """Read torchrun's environment, pick the device and precision, start the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
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
    return Runtime(dev, rank, world_size, local_rank, _amp_dtype(precision, dev), control)


def _amp_dtype(precision: str, dev: torch.device) -> torch.dtype | None:
    if precision == "fp32" or (precision == "auto" and dev.type != "cuda"):
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def teardown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict:
    """Every RNG's state as tensors and plain lists (loadable with torch.load(weights_only=True))."""
    py = random.getstate()
    npy = np.random.get_state()
    state = {"python": [py[0], list(py[1]), py[2]],
             "numpy": [npy[0], npy[1].tolist(), int(npy[2]), int(npy[3]), float(npy[4])],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = state["numpy"]
    np.random.set_state((npy[0], np.array(npy[1], dtype=np.uint32), npy[2], npy[3], npy[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopSignal:
    """SIGTERM or Ctrl-C asks the loop to stop after the current step; a second Ctrl-C forces it."""

    def __init__(self, say) -> None:
        self.requested = False
        self.say = say
        self._old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        self.say(f"{signal.Signals(signum).name}: finishing this step, saving a checkpoint, then exiting "
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
        return flag
    t = torch.tensor([1.0 if flag else 0.0])  # on the CPU, through the gloo group: no GPU sync
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=rt.control)
    return bool(t.item())
