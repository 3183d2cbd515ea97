"""AdamW with weight-decay groups, and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings; never biases or LayerNorm gains (ndim < 2).

    Tied weights (GPT-2's wte and lm_head) appear once: named_parameters() de-duplicates.
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float],
                   device: torch.device) -> torch.optim.AdamW:
    # The fused kernel is one launch per step on CUDA; on CPU the default loop is fine.
    fused = device.type == "cuda"
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=1e-8, fused=fused)


def lr_factor(step: int, *, warmup: int, max_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak lr at `step` (0-based): linear warmup, then cosine to min_ratio.

    With warmup=10, max_steps=100: step 0 -> 0.1, step 9 -> 1.0, step 99 -> ~min_ratio.
    """
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, max_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, *, warmup: int, max_steps: int, min_ratio: float):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup=warmup, max_steps=max_steps, min_ratio=min_ratio))
