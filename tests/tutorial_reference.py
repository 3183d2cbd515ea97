"""The seed tutorial's BlockDataset, kept as the reference that train.BlockDataset must match.

It tokenizes each line of a text file in the DataLoader, keeps a token buffer, and yields
blocks with stride B whose labels are the inputs shifted by one (so neighbouring blocks share
one token). Kept as written there (comments translated), weak points included.
"""

from __future__ import annotations

import torch
from torch.utils.data import IterableDataset


class TutorialBlockDataset(IterableDataset):
    def __init__(self, path, tokenizer, block_size):
        self.path = path
        self.tokenizer = tokenizer
        self.block_size = block_size

    def __iter__(self):
        buffer = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line:
                    continue
                buffer.extend(self.tokenizer.encode(line))
                # stride B: each block needs B + 1 tokens (inputs and shifted labels)
                while len(buffer) >= self.block_size + 1:
                    ids = buffer[: self.block_size + 1]
                    yield {
                        "input_ids": torch.tensor(ids[: self.block_size], dtype=torch.long),
                        "labels": torch.tensor(ids[1 : self.block_size + 1], dtype=torch.long),
                    }
                    buffer = buffer[self.block_size :]
