"""TrainState: everything besides the weights that a run must carry across a stop, as one object.

The data position needs no field of its own: optimizer step s always sees permutation positions
[s*G, (s+1)*G) of the data stream, G = world_size x batch_size x grad_accum (train.sampling), so
`step` is the position, whatever the split of G over processes and micro-batches.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(slots=True)
class TrainState:
    step: int = 0
    """Optimizer steps done; also the position in the data stream, in global batches."""
    tokens_seen: int = 0
    """Training tokens consumed by all processes together."""
    loss_sum: float = 0.0
    """This process's summed step losses since the last log line, as restored (a resumed run
    logs the very averages an uninterrupted one does); the loop keeps the live sum on the device."""
    loss_steps: int = 0

    @staticmethod
    def rank_part(loss_window: tuple[float, int]) -> dict[str, Any]:
        """What differs between processes, saved for each: its RNG states and unlogged losses."""
        total, steps = loss_window
        return {"rng": rng_state(), "loss_window": [total, steps]}

    def meta(self) -> dict[str, Any]:
        return {"step": self.step, "tokens_seen": self.tokens_seen}

    @classmethod
    def restored(cls, meta: dict[str, Any], ranks: list[dict[str, Any]], *, rank: int, world_size: int,
                 seed: int) -> tuple["TrainState", bool]:
        """The state a process resumes with, and whether its RNG states are the saved ones.

        On the same number of processes each one takes back its own RNG states and loss window.
        On another number (an elastic resume) there is no saved RNG state to give it: every RNG is
        seeded from (seed, step, rank), and each process starts from the mean of the saved loss
        windows, which the log line's mean over processes turns back into the same average.
        """
        if len(ranks) == world_size:
            mine = ranks[rank]
            set_rng_state(mine["rng"])
            total, steps = mine["loss_window"]
            same = True
        else:
            seed_everything(hash_seed(seed, meta["step"], rank))
            total = sum(float(r["loss_window"][0]) for r in ranks) / len(ranks)
            steps = int(ranks[0]["loss_window"][1])
            same = False
        return cls(step=int(meta["step"]), tokens_seen=int(meta["tokens_seen"]), loss_sum=float(total),
                   loss_steps=int(steps)), same


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers, the same on every machine (unlike Python's hash())."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = ((x ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


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
