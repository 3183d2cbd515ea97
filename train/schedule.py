"""The learning-rate schedule as a pure function of the step: linear warmup, then cosine to a floor.

Nothing about it is stored: a resumed run recomputes lr_at(step) from the run's settings, which
a resume may not change (see train.resume), so no step's learning rate can jump.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, lr: float, warmup: int, max_steps: int, min_lr_ratio: float) -> float:
    """The learning rate optimizer step `step` (0-based) uses.

    Steps 0 .. warmup-1 rise linearly to `lr` (step warmup-1 is the peak); steps warmup ..
    max_steps-1 follow a half cosine from `lr` down to `lr * min_lr_ratio`, reached exactly at
    the last step, max_steps-1. Past the end it stays at the floor. With lr=1, warmup=10,
    max_steps=110, min_lr_ratio=0.1: step 0 -> 0.1, step 9 -> 1.0, step 59 -> ~0.55, step 109 -> 0.1.
    """
    if not 0 <= warmup < max_steps:
        raise ValueError(f"warmup {warmup} must lie in [0, max_steps={max_steps})")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    floor = lr * min_lr_ratio
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max_steps - 1 - warmup  # steps of the decay after its first; the last one is the floor
    if span <= 0 or step >= max_steps - 1:
        return floor
    progress = (step - warmup) / span
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def schedule_of(cfg) -> dict[str, float | int]:
    """lr_at's keyword arguments from a TrainConfig."""
    return {"lr": cfg.lr, "warmup": cfg.warmup, "max_steps": cfg.max_steps, "min_lr_ratio": cfg.min_lr_ratio}
