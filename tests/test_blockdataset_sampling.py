"""Property tests of the pure block, permutation and rank/worker math (train.sampling)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from train.sampling import EpochPlan, Permutation, advance, num_blocks, owned_by_worker, schedule


@given(n=st.integers(0, 3000), seed=st.integers(0, 2**64 - 1), epoch=st.integers(0, 10**6))
@settings(max_examples=200, deadline=None)
def test_permutation_is_a_bijection(n, seed, epoch):
    out = Permutation(n, seed, epoch)(np.arange(n))
    assert np.array_equal(np.sort(out), np.arange(n))


@given(n=st.integers(1, 500), seed=st.integers(0, 1000), epoch=st.integers(0, 1000),
       idx=st.lists(st.integers(0, 10**9), min_size=1, max_size=20))
@settings(max_examples=100, deadline=None)
def test_permutation_evaluates_at_any_index(n, seed, epoch, idx):
    # Evaluating a few positions agrees with evaluating all of them: resuming is O(1).
    perm = Permutation(n, seed, epoch)
    positions = np.array([i % n for i in idx])
    assert np.array_equal(perm(positions), perm(np.arange(n))[positions])


def test_permutation_depends_on_seed_and_epoch_only():
    n = 1000
    base = Permutation(n, 1, 0)(np.arange(n))
    assert np.array_equal(base, Permutation(n, 1, 0)(np.arange(n)))
    assert not np.array_equal(base, Permutation(n, 1, 1)(np.arange(n)))  # a new epoch reshuffles
    assert not np.array_equal(base, Permutation(n, 2, 0)(np.arange(n)))
    assert not np.array_equal(base, np.arange(n))
    assert np.array_equal(Permutation(n, 1, 0, shuffle=False)(np.arange(n)), np.arange(n))


def test_permutation_is_well_spread():
    # Not a shuffle buffer: block 0 can land anywhere, and the first tenth of the epoch draws
    # from every tenth of the dataset.
    n = 10_000
    out = Permutation(n, 5, 0)(np.arange(n // 10))
    counts = np.bincount(out * 10 // n, minlength=10)
    assert counts.min() > 50, counts


def test_permutation_on_a_huge_domain_is_cheap():
    n = 10**10 // 1024
    out = Permutation(n, 0, 0)(np.arange(5))
    assert len(set(out.tolist())) == 5 and out.max() < n


def test_block_counts_by_hand():
    assert num_blocks(9, 4) == 2  # blocks [0, 5) and [4, 9)
    assert num_blocks(8, 4) == 1
    assert num_blocks(5, 4) == 1
    assert num_blocks(4, 4) == 0


def _epoch_blocks(n_blocks, world, batch, workers, seed, epoch, shuffle=True):
    """Every (rank, worker, batch index, blocks) the dataset would produce in one epoch."""
    plan = EpochPlan(n_blocks, world, batch)
    perm = Permutation(n_blocks, seed, epoch, shuffle)
    out = []
    for rank in range(world):
        for worker in range(workers):
            for i, (_, k) in enumerate(schedule(epoch, 0, plan.batches_per_rank, 1)):
                if owned_by_worker(i, worker, workers):
                    out.append((rank, worker, k, perm(plan.positions(k, rank))))
    return plan, out


@given(n_tokens=st.integers(2, 4000), block=st.integers(1, 64), world=st.integers(1, 5),
       workers=st.integers(1, 4), batch=st.integers(1, 6), seed=st.integers(0, 50), shuffle=st.booleans())
@settings(max_examples=300, deadline=None)
def test_every_block_exactly_once_per_epoch(n_tokens, block, world, workers, batch, seed, shuffle):
    n_blocks = num_blocks(n_tokens, block)
    if n_blocks < world * batch:
        return  # the dataset refuses this (tested in test_blockdataset.py)
    plan, produced = _epoch_blocks(n_blocks, world, batch, workers, seed, 3, shuffle)
    seen = np.concatenate([b for *_, b in produced])
    assert len(seen) == len(np.unique(seen)), "a block was delivered twice"
    assert len(seen) == n_blocks - plan.dropped
    assert 0 <= plan.dropped < world * batch
    # every rank runs the same number of steps
    per_rank = np.bincount([r for r, *_ in produced], minlength=world)
    assert np.all(per_rank == plan.batches_per_rank)


def _dataloader_order(per_worker: list[list[int]]) -> list[int]:
    """The order in which torch's DataLoader collects an IterableDataset's workers: round robin,
    skipping workers that are exhausted."""
    out, iters = [], [iter(w) for w in per_worker]
    alive = list(range(len(iters)))
    while alive:
        for w in list(alive):
            try:
                out.append(next(iters[w]))
            except StopIteration:
                alive.remove(w)
    return out


@given(batches=st.integers(1, 60), workers=st.integers(1, 7), start=st.integers(0, 59))
@settings(max_examples=200, deadline=None)
def test_batch_sequence_is_the_same_for_any_worker_count(batches, workers, start):
    start = start % batches
    order = [(e, k) for e, k in schedule(0, start, batches, 2)]
    per_worker = [[p for i, p in enumerate(order) if owned_by_worker(i, w, workers)] for w in range(workers)]
    assert _dataloader_order(per_worker) == order


@given(epoch=st.integers(0, 50), batch=st.integers(0, 99), steps=st.integers(0, 1000), per=st.integers(1, 100))
def test_advance_matches_walking_the_schedule(epoch, batch, steps, per):
    batch %= per
    walked = list(zip(range(steps + 1), schedule(epoch, batch, per, None)))[-1][1]
    assert advance(epoch, batch, steps, per) == walked
