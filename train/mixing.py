"""MixedBlockDataset: blocks drawn from several datasets in fixed proportions, resumable in O(1)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from itertools import count
from typing import Any

import numpy as np

from shards import Dataset
from shards.manifest import tokenizer_mismatch
from train.dataset import BlockStream, checked_layout, read_blocks
from train.sampling import Permutation, num_blocks

PERIOD = 1000  # proportions are exact over every PERIOD consecutive blocks of the global stream


def period_slots(weights: Sequence[float], period: int = PERIOD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dataset of each slot, its rank among that dataset's slots, slots per dataset) in a period.

    Each dataset gets round(w / sum(w) * period) slots (largest remainders), spread evenly by
    smooth weighted round robin: for weights (2, 1) and a period of 3 the slots are [0, 1, 0].
    """
    w = np.asarray(weights, dtype=np.float64)
    exact = w / w.sum() * period
    counts = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - counts), kind="stable")[: period - counts.sum()]:
        counts[i] += 1
    current = np.zeros(len(w))
    owner = np.empty(period, dtype=np.int64)
    for s in range(period):
        current += counts
        d = int(np.argmax(current))
        current[d] -= period
        owner[s] = d
    rank = np.zeros(period, dtype=np.int64)
    seen = np.zeros(len(w), dtype=np.int64)
    for s, d in enumerate(owner):
        rank[s], seen[d] = seen[d], seen[d] + 1
    return owner, rank, counts


def _dataset_seed(seed: int, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "little")


class MixedBlockDataset(BlockStream):
    """Batches whose blocks come from several datasets in the proportions `weights`.

    The global stream of block positions (all ranks, as in BlockDataset) is cut into periods
    of PERIOD slots, each owned by one dataset (`period_slots`). The n-th slot of dataset d
    takes the n-th block of d's own endless sequence of epochs, each a fresh permutation, so
    within a dataset every block is seen once per epoch of it. Everything is a function of the
    position, so ranks and workers stay disjoint and resuming at batch g reads nothing skipped.
    Default weights are the datasets' sizes in blocks (natural proportions).
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], block_size: int, *,
                 weights: Sequence[float] | None = None, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, batch_size: int | None = None, start_batch: int = 0):
        super().__init__()
        if len(paths) < 1:
            raise ValueError("give at least one dataset")
        self.data = [Dataset(p) for p in paths]
        if clash := tokenizer_mismatch([(d.path, d.manifest) for d in self.data]):
            raise ValueError(f"{clash[0]} and {clash[1]} were tokenized with different tokenizers; "
                             "they cannot be mixed")
        self.rank, self.world_size = checked_layout(block_size, rank, world_size, batch_size)
        self.n_blocks = [num_blocks(d.num_tokens, block_size) for d in self.data]
        for d, n in zip(self.data, self.n_blocks):
            if n < 1:
                raise ValueError(f"{d.path}: block_size {block_size} needs more than its {d.num_tokens} tokens")
        weights = list(self.n_blocks) if weights is None else list(weights)
        if len(weights) != len(self.data) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights {weights} must be {len(self.data)} non-negative numbers, not all zero")
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.block_size, self.seed, self.batch_size = block_size, seed, batch_size
        self.weights = [float(w) for w in weights]
        self.start_batch = start_batch
        self.owner, self.slot_rank, self.counts = period_slots(self.weights)
        self.seeds = [_dataset_seed(seed, i) for i in range(len(self.data))]

    def __len__(self) -> int:
        """Batches per rank in a nominal epoch (all datasets' blocks once); the stream is endless."""
        return max(1, sum(self.n_blocks) // (self.world_size * (self.batch_size or 1)))

    def state_dict(self) -> dict[str, Any]:
        return {"batch": self.start_batch, "seed": self.seed, "weights": self.weights,
                "block_size": self.block_size, "batch_size": self.batch_size, "world_size": self.world_size,
                "fingerprints": [d.fingerprint for d in self.data]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "weights", "block_size", "batch_size", "world_size"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"cannot resume: {key} was {state.get(key)!r}, now {getattr(self, key)!r}")
        if state.get("fingerprints") != [d.fingerprint for d in self.data]:
            raise ValueError("cannot resume: a dataset's fingerprint differs from the saved one")
        self.start_batch = int(state["batch"])

    def sources(self, batches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dataset index, block index) of each block of this rank's `batches`: two (n, b) arrays."""
        b = self.batch_size or 1
        first = (np.asarray(batches, dtype=np.int64) * self.world_size + self.rank) * b
        pos = (first[:, None] + np.arange(b)[None, :]).ravel()
        period, slot = np.divmod(pos, PERIOD)
        which = self.owner[slot]
        draw = period * self.counts[which] + self.slot_rank[slot]  # n-th draw from that dataset
        blocks = np.empty_like(pos)
        for d in np.unique(which).tolist():
            mask = which == d
            epoch, at = np.divmod(draw[mask], self.n_blocks[d])
            idx = np.flatnonzero(mask)
            for e in np.unique(epoch).tolist():
                sel = epoch == e
                blocks[idx[sel]] = Permutation(self.n_blocks[d], self.seeds[d], e)(at[sel])
        return which.reshape(-1, b), blocks.reshape(-1, b)

    def _keys(self) -> Iterator[int]:
        return count(self.start_batch)

    def _blocks(self, keys: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        which, blocks = self.sources(np.array(keys))
        return list(zip(which, blocks))

    def _read(self, spec: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        which, blocks = spec
        out = np.empty((len(blocks), self.block_size + 1), dtype=self.data[0].dtype)
        for d in np.unique(which).tolist():
            rows = np.flatnonzero(which == d)
            out[rows] = read_blocks(self.data[d], blocks[rows], self.block_size)
        return out
