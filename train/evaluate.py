"""Evaluation on a fixed set of validation blocks: the same blocks at every evaluation."""

from __future__ import annotations

import math

import numpy as np
import torch

from shards.errors import ShardFormatError, UsageError
from train.dataset import BlockDataset
from train.model import next_token_loss
from train.runtime import Runtime


class EvalSet:
    """`count` blocks spread evenly over a validation dataset, read once and kept in memory.

    Rank r evaluates rows r, r + R, ... and the losses are summed over ranks, so the result
    is the same for any number of ranks.
    """

    def __init__(self, path: str, block_size: int, count: int, rt: Runtime):
        try:
            ds = BlockDataset(path, block_size, shuffle=False, rank=0, world_size=1)
        except ShardFormatError:
            raise
        except ValueError as e:
            raise UsageError(f"--valid {path}: {e}") from None
        k = min(count, ds.n_blocks)
        blocks = (np.arange(k, dtype=np.int64) * ds.n_blocks) // k  # evenly spread, deterministic
        self.total = k
        self.vocab_size = ds.data.vocab_size  # the tokenizer's; the model's embedding may be padded past it
        self.tokens = ds.read_blocks(blocks[rt.rank::rt.world_size])  # (k / R, B + 1) int64


@torch.no_grad()
def evaluate(model: torch.nn.Module, evalset: EvalSet, batch_size: int, rt: Runtime) -> tuple[float, float]:
    """(mean loss in nats per token, perplexity) over the whole evaluation set.

    The softmax runs over the tokenizer's vocabulary only (not the padding rows a training
    embedding may have), so a checkpoint and the trimmed RUN/final evaluate alike.

    `model` is the bare model, never the DDP wrapper: ranks may hold different numbers of
    evaluation rows (even none, with fewer blocks than ranks), and a wrapped forward can wait
    for collectives the others never join. The one collective is the sum at the end.
    """
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=rt.device)  # (summed token losses, tokens)
    for i in range(0, len(evalset.tokens), batch_size):
        x = evalset.tokens[i:i + batch_size].to(rt.device, non_blocking=True)
        with rt.autocast():
            logits = model(x[:, :-1]).logits[..., :evalset.vocab_size]
        y = x[:, 1:]
        total[0] += next_token_loss(logits, y).double() * y.numel()
        total[1] += y.numel()
    if rt.distributed:
        torch.distributed.all_reduce(total)
    model.train(was_training)
    loss = (total[0] / total[1]).item()
    return loss, math.exp(min(loss, 50.0))
