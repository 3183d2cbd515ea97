"""BlockDataset: shifted input/label blocks from shards, shuffled, split by rank and worker, resumable."""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from shards import Dataset
from train.sampling import EpochPlan, Permutation, block_start, num_blocks, owned_by_worker, schedule


def distributed_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values, else torch.distributed's when it is initialized, else (0, 1)."""
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
    return (0 if rank is None else rank), (1 if world_size is None else world_size)


_CHUNK = 32  # batches whose block indices are computed in one vectorized call


class TokenBatch(dict):
    """`{"input_ids", "labels"}` as LongTensors, cut from a compact array of B + 1 token ids per row.

    Crossing from a DataLoader worker to the training process, it travels as that compact array
    (uint16: a quarter of the int64 bytes) pickled through the worker's pipe, and becomes
    LongTensors again on arrival. torch's default would put each tensor in a new shared-memory
    file and pass its descriptor, about 0.7 ms per batch on the machines we measured (see
    benchmarks/bench_blockdataset.py). If anything replaced the tensors (a collate_fn), it is
    pickled as a plain dict instead, so the shortcut can never send stale data.
    """

    __slots__ = ("compact", "_made")

    @classmethod
    def of(cls, compact: np.ndarray) -> "TokenBatch":
        """From ids of shape (b, B + 1), or (B + 1,) for a single block."""
        ids = torch.from_numpy(compact[..., :-1].astype(np.int64))
        labels = torch.from_numpy(compact[..., 1:].astype(np.int64))
        batch = cls(input_ids=ids, labels=labels)
        batch.compact, batch._made = compact, (ids, labels)
        return batch

    def __reduce__(self):
        ids, labels = self._made
        if len(self) == 2 and self.get("input_ids") is ids and self.get("labels") is labels:
            return _rebuild, (self.compact.tobytes(), self.compact.shape, self.compact.dtype.str)
        return dict, (dict(self),)

    def __copy__(self) -> "TokenBatch":
        new = TokenBatch(self)
        new.compact, new._made = self.compact, self._made
        return new


def as_is(batch):
    """collate_fn for `DataLoader(ds, batch_size=None)`: the dataset's batches are complete already."""
    return batch


def _rebuild(data: bytes, shape: tuple[int, ...], dtype: str) -> TokenBatch:
    return TokenBatch.of(np.frombuffer(data, dtype=dtype).reshape(shape))


class BlockStream(IterableDataset):
    """What every block stream shares: workers take whole batches in turn, items are TokenBatches.

    Subclasses give the ordered keys of the batches from the current position (`_keys`), the
    blocks of many keys at once (`_blocks`, vectorized: the permutation costs one numpy call
    per chunk, not per batch) and how to read one batch's blocks (`_read`).
    """

    batch_size: int | None

    def _keys(self) -> Iterator:
        raise NotImplementedError

    def _blocks(self, keys: list) -> list:
        raise NotImplementedError

    def _read(self, blocks) -> np.ndarray:
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = (key for i, key in enumerate(self._keys()) if owned_by_worker(i, worker, workers))
        while chunk := list(islice(mine, _CHUNK)):
            for blocks in self._blocks(chunk):
                compact = self._read(blocks)  # (b, B + 1) in the dataset's dtype
                yield TokenBatch.of(compact if self.batch_size is not None else compact[0])


def read_blocks(data: Dataset, blocks: np.ndarray, block_size: int) -> np.ndarray:
    """Tokens of the given blocks of `data`: (len(blocks), B + 1) in the dataset's dtype."""
    buf = np.empty((len(blocks), block_size + 1), dtype=data.dtype)
    for row, block in zip(buf, blocks.tolist()):
        data.read_into(block_start(block, block_size), row)
    return buf


def checked_layout(block_size: int, rank: int | None, world_size: int | None,
                   batch_size: int | None) -> tuple[int, int]:
    """Validate the settings every block stream shares; returns (rank, world_size)."""
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    rank, world_size = distributed_defaults(rank, world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return rank, world_size


class BlockDataset(BlockStream):
    """Blocks of a shards dataset as `{"input_ids", "labels"}` LongTensors.

    Block i is tokens [i*B, i*B + B + 1) of the dataset's stream (blocks may span shards):
    `input_ids` its first B tokens, `labels` its last B. With `batch_size=b` each item is a
    batch, [b, B] tensors, to be used with `DataLoader(ds, batch_size=None, num_workers=W)`:
    workers take whole batches in turn, so the batches a rank sees are the same for every W.
    Without it each item is one block ([B] tensors) and batching is the DataLoader's.

    `shuffle=True` visits a permutation of all blocks, a pure function of (seed, epoch);
    each rank gets its own positions of it; the last (n_blocks mod world_size*batch) blocks
    of an epoch are dropped so every rank runs the same number of steps (with `grad_accum` A, the
    last n_blocks mod (world_size*batch*A), so that epochs hold whole optimizer steps and a step's
    blocks depend only on that product). Iteration starts at
    (epoch, start_batch) without reading anything skipped, and runs `epochs` epochs (None:
    forever). `state_dict()`/`load_state_dict()` carry that position.
    """

    def __init__(self, path: str | os.PathLike[str], block_size: int, *, shuffle: bool = True, seed: int = 0,
                 epoch: int = 0, rank: int | None = None, world_size: int | None = None,
                 batch_size: int | None = None, grad_accum: int = 1, start_batch: int = 0,
                 epochs: int | None = 1):
        super().__init__()
        self.data = Dataset(path)  # ShardFormatError (a ValueError) when not a complete dataset
        self.path = Path(path)
        self.rank, self.world_size = checked_layout(block_size, rank, world_size, batch_size)
        if block_size >= self.data.num_tokens:
            raise ValueError(f"block_size {block_size} needs more than the dataset's {self.data.num_tokens} tokens")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be positive or None, got {epochs}")
        self.block_size, self.shuffle, self.seed = block_size, shuffle, seed
        self.batch_size, self.epochs = batch_size, epochs
        if not isinstance(grad_accum, int) or grad_accum < 1:
            raise ValueError(f"grad_accum must be a positive integer, got {grad_accum!r}")
        self.grad_accum = grad_accum
        self.n_blocks = num_blocks(self.data.num_tokens, block_size)
        self.plan = EpochPlan(self.n_blocks, self.world_size, batch_size or 1, grad_accum)
        if self.plan.batches_per_rank == 0:
            raise ValueError(
                f"{self.n_blocks} blocks of {block_size} tokens cannot give world_size {self.world_size} x "
                f"batch_size {batch_size or 1} x grad_accum {grad_accum} blocks per step; use a smaller block or "
                "batch size, or more data")
        self.epoch, self.start_batch = 0, 0
        self.set_position(epoch, start_batch)

    # -- position -----------------------------------------------------------------------------
    def set_position(self, epoch: int, batch: int) -> None:
        """Start the next iteration at `batch` (already consumed batches) of `epoch`."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if not 0 <= batch <= len(self):
            raise ValueError(f"start batch {batch} is beyond the {len(self)} batches of an epoch on this rank")
        self.epoch, self.start_batch = epoch, batch

    def set_epoch(self, epoch: int) -> None:
        self.set_position(epoch, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.start_batch, "seed": self.seed, "shuffle": self.shuffle,
                "block_size": self.block_size, "batch_size": self.batch_size, "world_size": self.world_size,
                "grad_accum": self.grad_accum, "fingerprint": self.data.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = {"grad_accum": 1, **state}
        for key in ("seed", "shuffle", "block_size", "batch_size", "world_size", "grad_accum"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"cannot resume: {key} was {state.get(key)!r}, now {getattr(self, key)!r}")
        if state.get("fingerprint") != self.data.fingerprint:
            raise ValueError("cannot resume: the dataset's fingerprint differs from the saved one")
        self.set_position(state["epoch"], state["batch"])

    def __len__(self) -> int:
        """Batches (or blocks, without batch_size) per rank per epoch."""
        return self.plan.batches_per_rank

    # -- reading ------------------------------------------------------------------------------
    def blocks(self, epoch: int, batch: int) -> np.ndarray:
        """Block indices of this rank's batch `batch` of `epoch`: (batch_size,) int64."""
        return self._blocks([(epoch, batch)])[0]

    def read_blocks(self, blocks: np.ndarray) -> torch.Tensor:
        """Tokens of the given blocks, (len(blocks), B + 1) int64."""
        return torch.from_numpy(read_blocks(self.data, blocks, self.block_size).astype(np.int64))

    def _keys(self) -> Iterator[tuple[int, int]]:
        return schedule(self.epoch, self.start_batch, len(self), self.epochs)

    def _blocks(self, keys: list[tuple[int, int]]) -> list[np.ndarray]:
        out = []
        for epoch in dict.fromkeys(e for e, _ in keys):  # epochs in order, usually one
            batches = np.array([k for e, k in keys if e == epoch], dtype=np.int64)
            positions = np.concatenate([self.plan.positions(int(k), self.rank) for k in batches])
            perm = Permutation(self.n_blocks, self.seed, epoch, self.shuffle)
            out += np.split(perm(positions), len(batches))
        return out

    def _read(self, blocks: np.ndarray) -> np.ndarray:
        return read_blocks(self.data, blocks, self.block_size)
