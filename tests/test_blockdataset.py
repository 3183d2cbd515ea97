"""train.BlockDataset on real shards: block contents, DataLoader workers, resume, the tutorial."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from shards import Dataset
from tests.conftest import random_docs
from train import BlockDataset


@pytest.fixture
def stream_ds(make_dataset):
    """A 3-shard dataset of 2,000-odd random tokens, and its stream."""
    docs = random_docs(np.random.default_rng(1), 120, 1000)
    path = make_dataset(docs, shard_tokens=800)
    return path, np.concatenate(docs)


def _collect(loader) -> list[dict[str, torch.Tensor]]:
    return [{k: v.clone() for k, v in b.items()} for b in loader]


def test_unshuffled_blocks_are_the_stream_in_order(stream_ds):
    path, stream = stream_ds
    B = 16
    ds = BlockDataset(path, B, shuffle=False)
    assert len(Dataset(path).manifest.shards) >= 3
    items = list(ds)
    assert len(items) == len(ds) == (len(stream) - 1) // B
    for i, item in enumerate(items):
        assert item["input_ids"].dtype == torch.long and item["input_ids"].shape == (B,)
        assert np.array_equal(item["input_ids"].numpy(), stream[i * B:i * B + B])
        assert np.array_equal(item["labels"].numpy(), stream[i * B + 1:i * B + B + 1])


@given(lengths=st.lists(st.integers(1, 30), min_size=2, max_size=40), shard_tokens=st.integers(1, 200),
       block=st.integers(1, 25), seed=st.integers(0, 5))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_blocks_span_shards_and_do_not_depend_on_shard_size(make_dataset, lengths, shard_tokens, block, seed):
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, 1000, size=n) for n in lengths]
    stream = np.concatenate(docs)
    if (len(stream) - 1) // block < 1:
        return
    one = BlockDataset(make_dataset(docs, shard_tokens=10**9), block, seed=seed, batch_size=1)
    many = BlockDataset(make_dataset(docs, shard_tokens=shard_tokens), block, seed=seed, batch_size=1)
    for a, b in zip(one, many, strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    # Every block equals the stream slice it names, wherever the shard boundaries fall.
    x = many.read_blocks(np.arange(many.n_blocks)).numpy()
    for i in range(many.n_blocks):
        assert np.array_equal(x[i], stream[i * block:i * block + block + 1])


def test_labels_are_inputs_shifted_by_one(stream_ds):
    path, _ = stream_ds
    for batch in BlockDataset(path, 32, batch_size=4, seed=3):
        assert batch["input_ids"].shape == batch["labels"].shape == (4, 32)
        assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_dataloader_batches_do_not_depend_on_workers(stream_ds, workers):
    path, _ = stream_ds
    reference = _collect(BlockDataset(path, 8, batch_size=3, seed=11))
    loader = DataLoader(BlockDataset(path, 8, batch_size=3, seed=11), batch_size=None, num_workers=workers)
    got = _collect(loader)
    assert len(got) == len(reference) > 10
    for a, b in zip(got, reference):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])


def test_ranks_and_workers_see_each_block_once(make_dataset):
    # Token ids equal stream positions (uint32 vocabulary), so a block's first id names it.
    n = 3001
    path = make_dataset([np.arange(a, min(a + 37, n)) for a in range(0, n, 37)], vocab_size=70_000,
                        shard_tokens=500)
    B, world, batch = 8, 3, 2
    seen = []
    for rank in range(world):
        ds = BlockDataset(path, B, batch_size=batch, seed=4, rank=rank, world_size=world)
        for item in DataLoader(ds, batch_size=None, num_workers=2):
            assert torch.equal(item["labels"], item["input_ids"] + 1)
            seen += (item["input_ids"][:, 0] // B).tolist()
    n_blocks = (n - 1) // B
    assert len(seen) == len(set(seen)), "a block was delivered twice"
    assert set(seen) <= set(range(n_blocks))
    assert n_blocks - world * batch < len(seen) <= n_blocks  # the dropped remainder is < R x batch


def test_epochs_reshuffle_and_seed_decides(stream_ds):
    path, _ = stream_ds
    first = lambda **kw: next(iter(BlockDataset(path, 8, batch_size=4, **kw)))["input_ids"]
    assert torch.equal(first(seed=1, epoch=0), first(seed=1, epoch=0))
    assert not torch.equal(first(seed=1, epoch=0), first(seed=1, epoch=1))
    assert not torch.equal(first(seed=1, epoch=0), first(seed=2, epoch=0))


def test_resume_continues_with_the_same_batches(stream_ds, monkeypatch):
    path, _ = stream_ds
    straight = _collect(BlockDataset(path, 8, batch_size=2, seed=9, epochs=3))
    per_epoch = len(BlockDataset(path, 8, batch_size=2))
    consumed = per_epoch + 7  # resume inside the second epoch
    ds = BlockDataset(path, 8, batch_size=2, seed=9, epochs=None)
    ds.load_state_dict({**ds.state_dict(), "epoch": 1, "batch": 7})
    reads = []
    original = Dataset.read_into
    monkeypatch.setattr(Dataset, "read_into", lambda self, start, out: reads.append(start) or original(self, start, out))
    it = iter(DataLoader(ds, batch_size=None, num_workers=0))
    resumed = [next(it) for _ in range(12)]
    assert len(reads) == 12 * 2  # only the blocks delivered were read: skipping is O(1)
    for a, b in zip(resumed, straight[consumed:consumed + 12]):
        assert torch.equal(a["input_ids"], b["input_ids"])


def test_state_dict_refuses_other_settings(stream_ds):
    path, _ = stream_ds
    state = BlockDataset(path, 8, batch_size=2, seed=9).state_dict()
    with pytest.raises(ValueError, match="seed"):
        BlockDataset(path, 8, batch_size=2, seed=10).load_state_dict(state)
    with pytest.raises(ValueError, match="block_size"):
        BlockDataset(path, 16, batch_size=2, seed=9).load_state_dict(state)


def test_len_is_batches_per_rank(stream_ds):
    path, stream = stream_ds
    n_blocks = (len(stream) - 1) // 8
    assert len(BlockDataset(path, 8)) == n_blocks
    assert len(BlockDataset(path, 8, batch_size=3, rank=1, world_size=2)) == n_blocks // 6


def test_bad_arguments_raise_value_errors(stream_ds, tmp_path):
    path, stream = stream_ds
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="incomplete dataset"):
        BlockDataset(tmp_path / "empty", 8)
    with pytest.raises(ValueError, match="block_size"):
        BlockDataset(path, 0)
    with pytest.raises(ValueError, match="block_size"):
        BlockDataset(path, len(stream))
    with pytest.raises(ValueError, match="rank 2"):
        BlockDataset(path, 8, rank=2, world_size=2)
    with pytest.raises(ValueError, match="start batch"):
        BlockDataset(path, 8, start_batch=10**6)
    with pytest.raises(ValueError, match="epoch"):
        BlockDataset(path, 8, epoch=-1)
    with pytest.raises(ValueError, match="world_size"):
        BlockDataset(path, 8, batch_size=10**5)


def test_matches_the_tutorial_blockdataset(tmp_path, corpus_lines, tokenizer_dir):
    """preprocess --no-eos + BlockDataset(shuffle=False) == the tutorial's pipeline, block for block."""
    from click.testing import CliRunner
    from transformers import AutoTokenizer

    from preprocess.cli import main as preprocess
    from tests.tutorial_reference import TutorialBlockDataset

    text = tmp_path / "train.txt"
    text.write_text("\n".join(corpus_lines[:400]) + "\n", encoding="utf-8")
    out = tmp_path / "ds"
    result = CliRunner().invoke(preprocess, [str(text), "--tokenizer", str(tokenizer_dir), "--out", str(out),
                                             "--no-eos", "--workers", "0", "--shard-tokens", "5000", "-q"])
    assert result.exit_code == 0, result.output
    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    B = 64
    ours = list(BlockDataset(out, B, shuffle=False))
    theirs = list(TutorialBlockDataset(text, tok, B))
    assert len(ours) == len(theirs) > 100
    for a, b in zip(ours, theirs):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])


def test_batches_cross_processes_compactly_and_safely(stream_ds):
    import copy
    import pickle

    path, _ = stream_ds
    batch = next(iter(BlockDataset(path, 16, batch_size=4, seed=1)))
    payload = pickle.dumps(batch)
    assert len(payload) < 4 * 17 * 2 + 500  # the uint16 ids, not two int64 tensors
    back = pickle.loads(payload)
    assert all(torch.equal(back[k], batch[k]) and back[k].dtype == torch.long for k in ("input_ids", "labels"))
    # Once something replaces the tensors (a collate_fn, pin_memory), it travels as a plain dict.
    changed = copy.copy(batch)
    changed.update(input_ids=batch["input_ids"] + 1)
    again = pickle.loads(pickle.dumps(changed))
    assert torch.equal(again["input_ids"], batch["input_ids"] + 1)


def test_dataloader_batching_single_blocks_stays_correct(stream_ds):
    # The tutorial's way: single blocks, batched by the DataLoader's collate in the workers.
    path, stream = stream_ds
    B = 16
    loader = DataLoader(BlockDataset(path, B, shuffle=False), batch_size=5, num_workers=2)
    rows = sorted(tuple(r.tolist()) for batch in loader for r in batch["input_ids"])
    want = sorted(tuple(stream[i * B:i * B + B].tolist()) for i in range((len(stream) - 1) // B))
    assert rows == want
