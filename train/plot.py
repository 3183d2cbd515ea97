"""RUN/loss.png: train and eval loss over the learning rate, redrawn at each evaluation, atomically.

Readable for 10 steps and for 100,000: long runs show the raw train loss faintly with a moving
average over it, so the trend is visible through the noise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def figure(records: list[dict[str, Any]], title: str):
    """The matplotlib Figure (two panels: loss, learning rate) for metrics records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = np.array([(r["step"], r["loss"]) for r in records if "loss" in r], dtype=np.float64).reshape(-1, 2)
    evals = np.array([(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r], dtype=np.float64).reshape(-1, 2)
    lrs = np.array([(r["step"], r["lr"]) for r in records if "lr" in r], dtype=np.float64).reshape(-1, 2)
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, height_ratios=(3, 1))
    if len(train):
        many = len(train) > 200
        ax.plot(train[:, 0], train[:, 1], lw=0.6 if many else 1.2, alpha=0.35 if many else 1.0,
                color="tab:blue", label="train loss" if not many else "train loss (logged)")
        if many:
            ax.plot(train[:, 0], _moving_average(train[:, 1], max(5, len(train) // 100)), lw=1.4,
                    color="tab:blue", label="train loss (moving average)")
    if len(evals):
        ax.plot(evals[:, 0], evals[:, 1], "o-", ms=3 if len(evals) > 50 else 5, lw=1.2, color="tab:orange",
                label="eval loss")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    if len(train) or len(evals):
        ax.legend(loc="upper right")
    ax.set_title(title, fontsize=10)
    if len(lrs):
        ax_lr.plot(lrs[:, 0], lrs[:, 1], color="tab:green", lw=1.2)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _moving_average(y: np.ndarray, width: int) -> np.ndarray:
    """Trailing mean over up to `width` points: (y[max(0, i-w+1)] + ... + y[i]) / count."""
    c = np.concatenate(([0.0], np.cumsum(y)))
    i = np.arange(1, len(y) + 1)
    lo = np.maximum(0, i - width)
    return (c[i] - c[lo]) / (i - lo)


def draw(records: list[dict[str, Any]], out: Path, title: str) -> Path | None:
    """Write the plot to `out` through a temp file and a rename (a viewer never sees half a PNG).
    None when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    import matplotlib.pyplot as plt

    fig = figure(records, title)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out
