"""Training GPT-2 from shards: BlockDataset, the loop, checkpoints and the `train` command."""

__all__ = ["BlockDataset"]


def __getattr__(name: str):
    # Lazy, so `train --help` does not import torch.
    if name == "BlockDataset":
        from train.dataset import BlockDataset

        return BlockDataset
    raise AttributeError(name)
