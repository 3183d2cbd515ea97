"""A run's datasets: opened and checked before torch loads, named by fingerprint, streamed by step."""

from __future__ import annotations

from dataclasses import dataclass

from shards import Dataset
from shards.errors import ShardFormatError, UsageError
from shards.manifest import tokenizer_mismatch
from train.config import TrainConfig


@dataclass(frozen=True, slots=True)
class RunData:
    train: list[Dataset]
    valid: Dataset | None

    @property
    def fingerprints(self) -> dict[str, list[str] | str | None]:
        """What names the data of a run: its datasets' fingerprints, never their paths (they move)."""
        return {"data": [d.fingerprint for d in self.train],
                "valid": self.valid.fingerprint if self.valid is not None else None}

    @property
    def first(self) -> Dataset:
        return self.train[0] if self.train else self.valid

    @property
    def tokenizer_sha256(self) -> str:
        return self.first.manifest.tokenizer_sha256


def describe(ds: Dataset) -> str:
    tok = ds.manifest.raw["tokenizer"]
    return f"{ds.path} (tokenizer {tok.get('kind')} from {tok.get('source')}, sha256 {tok['sha256'][:12]})"


def open_data(cfg: TrainConfig) -> RunData:
    """Open every dataset (refusing incomplete ones) and check they share one tokenizer."""
    train = [Dataset(p) for p in cfg.data]
    valid = Dataset(cfg.valid) if cfg.valid else None
    everyone = train + ([valid] if valid is not None else [])
    if clash := tokenizer_mismatch([(d.path, d.manifest) for d in everyone]):
        other = next(d for d in everyone if d.path == clash[0])
        flag = "--valid" if other is valid else "--data"
        raise UsageError(f"{flag} {describe(other)} was tokenized differently from --data {describe(train[0])}; "
                         "preprocess both with the same --tokenizer")
    return RunData(train, valid)


def train_stream(cfg: TrainConfig, data: RunData, *, block_size: int, rank: int, world_size: int, step: int):
    """This process's endless stream of training batches, starting at optimizer step `step`.

    Micro-batch k of process r covers permutation positions [(k*R + r)*b, +b); step s is
    micro-batches s*A .. s*A + A - 1 of every process: the positions [s*G, (s+1)*G). So the
    blocks of a step depend only on G = R*b*A, and a resume may split G differently.
    """
    try:
        if len(data.train) > 1:
            from train.mixing import MixedBlockDataset

            return MixedBlockDataset([str(d.path) for d in data.train], block_size, weights=cfg.weights,
                                     seed=cfg.seed, rank=rank, world_size=world_size, batch_size=cfg.batch_size,
                                     start_batch=step * cfg.grad_accum)
        from train.dataset import BlockDataset
        from train.sampling import advance

        ds = BlockDataset(str(data.train[0].path), block_size, shuffle=True, seed=cfg.seed, rank=rank,
                          world_size=world_size, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, epochs=None)
        ds.set_position(*advance(0, 0, step * cfg.grad_accum, len(ds)))
        return ds
    except ShardFormatError:
        raise
    except ValueError as e:  # BlockDataset's argument checks: a setting that cannot work
        raise UsageError(f"--data: {e}") from None
