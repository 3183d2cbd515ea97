"""Metrics: metrics.jsonl always, TensorBoard and a loss-curve PNG when those packages exist."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

METRICS = "metrics.jsonl"

# Dense bf16/fp16 tensor-core peaks (FLOP/s) of the GPUs whose numbers are published, matched
# as whole words of the device name, most specific first ("A100" is not "RTX A1000", "L4" not
# "L40"). An unknown GPU gets no MFU rather than a guess.
PEAK_FLOPS = (
    (r"\bH200\b", 989.4e12),
    (r"\bH100\b.*\bPCIe\b", 756.0e12),
    (r"\bH100\b.*\bNVL\b", 835.0e12),
    (r"\bH100\b", 989.4e12),
    (r"\bA100\b", 312.0e12),
    (r"\bL40S\b", 362.1e12),
    (r"\bL4\b", 121.0e12),
)


def peak_flops(device: torch.device, amp: torch.dtype | None) -> float | None:
    if device.type != "cuda" or amp is None:
        return None
    return peak_for_name(torch.cuda.get_device_name(device))


def peak_for_name(name: str) -> float | None:
    return next((peak for pattern, peak in PEAK_FLOPS if re.search(pattern, name)), None)


def flops_per_token(n_params: int, n_layer: int, n_embd: int, block_size: int) -> float:
    """Training FLOPs per token: 6N for the weights plus attention's 12·L·d·T (PaLM, appendix B)."""
    return 6 * n_params + 12 * n_layer * n_embd * block_size


class Metrics:
    """One JSON object per logged step in RUN/metrics.jsonl (rank 0 only), TensorBoard when it is
    installed, and RUN/loss.png redrawn at each evaluation (`redraw`)."""

    def __init__(self, run_dir: Path, enabled: bool, keep_until: int | None, title: str = ""):
        self.path = Path(run_dir) / METRICS
        self.plot_path = Path(run_dir) / "loss.png"
        self.enabled = enabled
        self.title = title
        self.tb = None
        if not enabled:
            return
        # Resuming from step s: the records after s belong to the interrupted attempt.
        if keep_until is not None and self.path.exists():
            kept = [r for r in read(self.path) if r.get("step", 0) <= keep_until]
            # Through a temp file: a kill here must not lose the records that are kept.
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
            os.replace(tmp, self.path)
        elif keep_until is None:
            self.path.write_text("", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        except ImportError:
            self.tb = None

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(k, v, record["step"])

    def redraw(self, subtitle: str = "") -> Path | None:
        """Draw RUN/loss.png from everything logged so far (atomically); None without matplotlib."""
        if not self.enabled:
            return None
        from train.plot import draw

        title = f"{self.title}\n{subtitle}" if subtitle else self.title
        try:
            return draw(read(self.path), self.plot_path, title)
        except OSError:
            # A full disk: the old plot stays (it is replaced by rename); the checkpoint that
            # follows reports the problem in its own words instead of a plot's.
            return None

    def close(self) -> None:
        if self.enabled and self.tb is not None:
            self.tb.close()
            self.tb = None


def read(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; a line cut short by a crash is skipped."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
