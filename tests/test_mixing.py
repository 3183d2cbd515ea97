"""Mixing datasets: proportions, disjoint ranks and workers, exact resume, tokenizer refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from train.mixing import PERIOD, MixedBlockDataset, period_slots

B = 8


def _arange_dataset(make_dataset, start: int, n: int, name: str):
    """Token ids are start + stream position: a block's first id names its dataset and block."""
    ids = np.arange(start, start + n)
    return make_dataset([ids[a:a + 50] for a in range(0, n, 50)], vocab_size=300_000, shard_tokens=700, name=name)


@pytest.fixture
def two(make_dataset):
    return _arange_dataset(make_dataset, 0, 4001, "a"), _arange_dataset(make_dataset, 100_000, 2001, "b")


def _decode(batch: torch.Tensor) -> list[tuple[int, int]]:
    """(dataset, block) of each row from its first token."""
    first = batch[:, 0].tolist()
    return [(0, t // B) if t < 100_000 else (1, (t - 100_000) // B) for t in first]


@given(weights=st.lists(st.integers(0, 50), min_size=1, max_size=6).filter(lambda w: sum(w) > 0))
@settings(max_examples=100, deadline=None)
def test_period_slots_are_exact_and_ranked(weights):
    owner, rank, counts = period_slots(weights)
    assert counts.sum() == PERIOD
    assert np.array_equal(np.bincount(owner, minlength=len(weights)), counts)
    assert np.all(np.abs(counts - np.asarray(weights) / sum(weights) * PERIOD) < 1)
    for d in range(len(weights)):  # each dataset's slots are numbered 0, 1, 2, ... in order
        assert np.array_equal(rank[owner == d], np.arange(counts[d]))


def test_proportions_over_many_blocks(two):
    ds = MixedBlockDataset(list(two), B, weights=[0.7, 0.3], batch_size=10, seed=1)
    it = iter(ds)
    drawn = [d for _ in range(300) for d, _ in _decode(next(it)["input_ids"])]
    share = np.mean(np.asarray(drawn) == 0)
    assert abs(share - 0.7) < 0.01, share  # 3,000 blocks: exact per period of 1,000


def test_each_dataset_block_once_per_its_epoch_across_ranks_and_workers(two):
    world, batch = 2, 3
    per_rank = []
    for rank in range(world):
        ds = MixedBlockDataset(list(two), B, weights=[1, 1], batch_size=batch, seed=3, rank=rank, world_size=world)
        loader = iter(DataLoader(ds, batch_size=None, num_workers=2))
        per_rank.append([s for _ in range(40) for s in _decode(next(loader)["input_ids"])])
    seen = per_rank[0] + per_rank[1]
    assert len(seen) == len(set(seen)) == 240  # dataset b has 250 blocks: no repeat before its epoch ends
    n_b = 2000 // B
    assert all(block < n_b for d, block in seen if d == 1)


def test_workers_do_not_change_the_batches(two):
    ref = MixedBlockDataset(list(two), B, weights=[2, 1], batch_size=4, seed=5)
    want = [b["input_ids"] for _, b in zip(range(30), iter(ref))]
    loader = DataLoader(MixedBlockDataset(list(two), B, weights=[2, 1], batch_size=4, seed=5),
                        batch_size=None, num_workers=3)
    got = [b["input_ids"].clone() for _, b in zip(range(30), loader)]
    assert all(torch.equal(a, b) for a, b in zip(want, got))


def test_resume_is_exact_and_reads_only_what_it_delivers(two):
    straight = MixedBlockDataset(list(two), B, weights=[0.7, 0.3], batch_size=4, seed=2)
    want = [b["input_ids"] for _, b in zip(range(600), iter(straight))][550:]  # past dataset b's first epoch
    again = MixedBlockDataset(list(two), B, weights=[0.7, 0.3], batch_size=4, seed=2)
    again.load_state_dict({**again.state_dict(), "batch": 550})
    got = [b["input_ids"] for _, b in zip(range(50), iter(again))]
    assert all(torch.equal(a, b) for a, b in zip(want, got))


def test_different_tokenizers_are_refused(two, make_dataset, tmp_path, corpus_lines):
    from preprocess.tokenizer import train_sentencepiece
    from tests.conftest import write_dataset

    other_tok = tmp_path / "other_tok"
    train_sentencepiece(corpus_lines[:800], 1100, other_tok, threads=1, character_coverage=0.98)
    other = tmp_path / "other"
    write_dataset(other, [np.arange(100)], vocab_size=300_000, shard_tokens=1000, tokenizer_dir=other_tok)
    with pytest.raises(ValueError, match="different tokenizers") as e:
        MixedBlockDataset([two[0], other], B)
    assert str(two[0]) in str(e.value) and str(other) in str(e.value)


def test_train_cli_mixes_and_resumes_exactly(train_valid, tmp_path):
    from click.testing import CliRunner

    from tests.conftest import train_args
    from train.cli import main as train
    from train.metrics import read

    mix = ["--data", str(train_valid / "valid"), "--weights", "0.7,0.3", "--max-steps", "8"]
    run = lambda out, *extra: CliRunner().invoke(train, train_args(train_valid, out) + mix + list(extra))
    assert run(tmp_path / "a").exit_code == 0
    assert run(tmp_path / "b", "--stop-at", "4").exit_code == 0
    resumed = CliRunner().invoke(train, ["--out", str(tmp_path / "b"), "--resume", "-q"])
    assert resumed.exit_code == 0, resumed.output
    losses = lambda r: [(x["step"], x["loss"]) for x in read(r / "metrics.jsonl") if "loss" in x]
    assert len(losses(tmp_path / "a")) == 8 and losses(tmp_path / "a") == losses(tmp_path / "b")
    other = CliRunner().invoke(train, ["--out", str(tmp_path / "b"), "--resume", "--weights", "0.5,0.5", "-q"])
    assert other.exit_code == 2 and "weights" in other.output
