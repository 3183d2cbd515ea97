"""Pure block, permutation and rank/worker math: plain ints and numpy, no torch.

The dataset is one stream of N tokens. Block i is tokens [i*B, i*B + B + 1): inputs are its
first B tokens, labels its last B, so consecutive blocks share one token and no next-token
transition is lost. There are (N - 1) // B blocks.

An epoch deals a permutation of the blocks out in batches of R * b positions (R ranks, b blocks
per rank): rank r's k-th batch is permutation positions [k*R*b + r*b, k*R*b + r*b + b). With A
micro-batches per optimizer step, step s is batches s*A .. s*A + A - 1 of every rank, i.e.
positions [s*G, (s+1)*G) with G = R*b*A: the blocks of a step depend on G alone. The last
(n_blocks mod G) positions of an epoch are dropped so every rank runs the same whole steps.
DataLoader worker w of W produces every W-th batch, so the batch sequence a rank sees does not
depend on W.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

def num_blocks(num_tokens: int, block_size: int) -> int:
    """(N - 1) // B: every block needs B + 1 tokens, and neighbours share one."""
    return max(0, (num_tokens - 1) // block_size)


def block_start(block: int, block_size: int) -> int:
    """First token of block `block`: for B = 4, block 2 is tokens [8, 13)."""
    return block * block_size


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a fast, well-spread bijection on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _keys(seed: int, epoch: int, rounds: int) -> np.ndarray:
    base = np.array([seed & 0xFFFFFFFFFFFFFFFF, epoch & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    state = _mix(base[0:1] ^ _mix(base[1:2] + np.uint64(0x9E3779B97F4A7C15)))
    out = []
    for r in range(rounds):
        state = _mix(state + np.uint64((0x9E3779B97F4A7C15 * (r + 1)) & 0xFFFFFFFFFFFFFFFF))
        out.append(state[0])
    return np.array(out, dtype=np.uint64)


class Permutation:
    """A bijection of [0, n) that is a pure function of (seed, epoch), evaluated at any index.

    A balanced Feistel network on the smallest even number of bits covering n, with cycle
    walking for indices that land outside [0, n). It holds a few integers, not an n-sized
    array, so shuffling 10^10 tokens costs nothing at start-up, and resuming at any position
    is O(1). `shuffle=False` is the identity.
    """

    ROUNDS = 6

    def __init__(self, n: int, seed: int, epoch: int, shuffle: bool = True):
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n, self.shuffle = n, shuffle
        bits = max(2, int(n - 1).bit_length() if n > 1 else 1)
        self.half = (bits + 1) // 2
        self.mask = np.uint64((1 << self.half) - 1)
        self.keys = _keys(seed, epoch, self.ROUNDS)

    def _feistel(self, x: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = x >> h, x & self.mask
        for k in self.keys:
            left, right = right, left ^ (_mix(right ^ k) & self.mask)
        return (left << h) | right

    def __call__(self, index: np.ndarray | int) -> np.ndarray:
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"positions must lie in [0, {self.n})")
        if not self.shuffle:
            return idx.copy()
        x = self._feistel(idx.astype(np.uint64))
        out = x >= np.uint64(self.n)
        while out.any():  # cycle walking: the domain is < 4n, so this ends after a few rounds
            x[out] = self._feistel(x[out])
            out = x >= np.uint64(self.n)
        return x.astype(np.int64)


@dataclass(frozen=True, slots=True)
class EpochPlan:
    """How one epoch of `n_blocks` is dealt to `world_size` ranks in batches of `batch_size`.

    With `grad_accum` A, an epoch holds whole optimizer steps of G = world_size * batch_size * A
    blocks: n_blocks // G steps, each rank's batches a multiple of A. Step s of an epoch is then
    positions [s*G, (s+1)*G) however G is split, so a run can resume on another number of ranks
    (or another batch size and accumulation) with the same G and see the same blocks per step.
    """

    n_blocks: int
    world_size: int
    batch_size: int
    grad_accum: int = 1

    @property
    def global_batch(self) -> int:
        return self.world_size * self.batch_size * self.grad_accum

    @property
    def batches_per_rank(self) -> int:
        return self.n_blocks // self.global_batch * self.grad_accum

    @property
    def dropped(self) -> int:
        """Blocks left out of each epoch (< the global batch) so every step is whole on every rank."""
        return self.n_blocks - self.batches_per_rank * self.world_size * self.batch_size

    def positions(self, batch: int, rank: int) -> np.ndarray:
        """Permutation positions of `rank`'s batch number `batch`: (batch_size,) int64."""
        if not 0 <= batch < self.batches_per_rank:
            raise IndexError(f"batch {batch} outside [0, {self.batches_per_rank})")
        first = (batch * self.world_size + rank) * self.batch_size
        return np.arange(first, first + self.batch_size, dtype=np.int64)


def schedule(epoch: int, batch: int, batches_per_epoch: int, epochs: int | None):
    """(epoch, batch) pairs from a starting position to the end of the run, in order.

    With epochs=None it never ends. For 3 batches per epoch from (1, 2): (1, 2), (2, 0), ...
    """
    if batches_per_epoch <= 0:
        return
    last = None if epochs is None else epoch + epochs
    while last is None or epoch < last:
        while batch < batches_per_epoch:
            yield epoch, batch
            batch += 1
        epoch, batch = epoch + 1, 0


def owned_by_worker(sequence_index: int, worker: int, num_workers: int) -> bool:
    """Worker w of W produces batches w, w + W, w + 2W, ... counted from where iteration began,
    which is the order in which a DataLoader collects from its workers."""
    return sequence_index % num_workers == worker


def advance(epoch: int, batch: int, steps: int, batches_per_epoch: int) -> tuple[int, int]:
    """The position `steps` batches after (epoch, batch): (0, 2) + 5 with 3 per epoch = (2, 1)."""
    total = epoch * batches_per_epoch + batch + steps
    return divmod(total, batches_per_epoch)
