"""Opening the run's datasets, checking they agree, and building the training stream."""

from __future__ import annotations

from dataclasses import dataclass

from shards import Dataset
from shards.manifest import tokenizer_mismatch
from shards.errors import ShardFormatError, UsageError
from train.config import TrainConfig
from train.dataset import BlockDataset
from train.runtime import Runtime
from train.sampling import advance


@dataclass(frozen=True, slots=True)
class RunData:
    train: list[Dataset]
    valid: Dataset | None

    @property
    def fingerprints(self) -> dict[str, str]:
        out = {str(d.path): d.fingerprint for d in self.train}
        if self.valid is not None:
            out[f"valid:{self.valid.path}"] = self.valid.fingerprint
        return out


def _describe(ds: Dataset) -> str:
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
        raise UsageError(f"{flag} {_describe(other)} was tokenized differently from --data {_describe(train[0])}; "
                         "preprocess both with the same --tokenizer")
    return RunData(train, valid)


def train_stream(cfg: TrainConfig, data: RunData, block_size: int, rt: Runtime, batches_done: int):
    """The endless stream of this rank's training batches, starting after `batches_done`."""
    try:
        return _stream(cfg, data, block_size, rt, batches_done)
    except ShardFormatError:
        raise
    except ValueError as e:  # BlockDataset's argument checks: a setting that cannot work
        raise UsageError(f"--data: {e}") from None


def _stream(cfg: TrainConfig, data: RunData, block_size: int, rt: Runtime, batches_done: int):
    if len(data.train) > 1:
        from train.mixing import MixedBlockDataset

        return MixedBlockDataset([str(d.path) for d in data.train], block_size, weights=cfg.weights,
                                 seed=cfg.seed, rank=rt.rank, world_size=rt.world_size,
                                 batch_size=cfg.batch_size, start_batch=batches_done)
    ds = BlockDataset(str(data.train[0].path), block_size, shuffle=True, seed=cfg.seed, rank=rt.rank,
                      world_size=rt.world_size, batch_size=cfg.batch_size, epochs=None)
    ds.set_position(*advance(0, 0, batches_done, len(ds)))
    return ds
