"""Training settings: a frozen dataclass, filled from defaults < TOML file < command-line flags."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from shards.errors import UsageError

# Settings that decide which tokens each step sees: a resumed run may not change them.
DATA_ORDER = ("data", "weights", "block_size", "batch_size", "grad_accum", "seed")
# Settings of one invocation, not of the run: never taken from a saved config.
PER_INVOCATION = ("stop_at", "resume", "allow_data_change")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    data: tuple[str, ...]
    """Dataset directories made by `preprocess` (several are mixed by `weights`)."""
    out: str
    """The run directory: config, metrics, checkpoints, final/ model."""
    weights: tuple[float, ...] | None = None
    """Sampling proportions of the --data datasets (default: by their sizes)."""
    valid: str | None = None
    """A dataset for evaluation; same tokenizer as --data."""
    model: str = "gpt2-tiny"
    """A preset name (gpt2-tiny, gpt2-mini, gpt2-small, gpt2-medium, gpt2-large, gpt2-xl) or a GPT2Config JSON."""
    init_from: str | None = None
    """Continue from a Hugging Face model directory instead of a fresh model."""
    block_size: int | None = None
    """Tokens per training sequence [default: the model's context length]."""
    batch_size: int = 8
    """Sequences per micro-batch per GPU (or the CPU)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    max_steps: int = 1000
    """Optimizer steps of the whole run; the schedule decays to its floor here."""
    stop_at: int | None = None
    """Stop cleanly after this step with a checkpoint (the schedule still spans max_steps)."""
    lr: float = 6e-4
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """The cosine decay ends at lr * min_lr_ratio."""
    warmup: int = 100
    """Linear warmup steps."""
    weight_decay: float = 0.1
    """AdamW decay of matrices and embeddings (never biases or norms)."""
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    dropout: float = 0.0
    """Dropout everywhere in the model; 0 for pretraining."""
    eval_every: int = 200
    """Evaluate on --valid every N steps (and at step 0 and at the end)."""
    eval_blocks: int = 200
    """Validation blocks in the fixed evaluation set (evenly spread over --valid)."""
    log_every: int = 10
    checkpoint_every: int = 500
    keep: int = 3
    """Complete checkpoints kept (at least 2)."""
    seed: int = 1337
    workers: int = 2
    """DataLoader worker processes per GPU (0 reads in the training process)."""
    device: str = "auto"
    """auto, cpu or cuda."""
    precision: str = "auto"
    """auto (bf16 on GPUs that have it, else fp16, fp32 on CPU), bf16, fp16 or fp32."""
    compile: bool = False
    """torch.compile the model."""
    pad_vocab_to: int = 64
    """Round the embedding up to a multiple of this for GPU speed; final/ is trimmed back."""
    sample_tokens: int = 60
    """Tokens generated for the sample printed at the end (0 to skip)."""
    sample_prompt: str | None = None
    resume: bool = False
    allow_data_change: bool = False
    """Resume even when the dataset fingerprint differs from the checkpoint's."""

    def __post_init__(self) -> None:
        for name in ("data", "weights"):  # JSON and TOML give lists; a frozen config holds tuples
            value = getattr(self, name)
            if isinstance(value, (list, str)):
                object.__setattr__(self, name, tuple(value) if isinstance(value, list) else (value,))

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise UsageError(msg)

        need(len(self.data) >= 1, "give at least one --data DIR")
        need(self.weights is None or len(self.weights) == len(self.data),
             f"--weights has {len(self.weights or ())} values for {len(self.data)} --data directories")
        need(self.weights is None or (all(w >= 0 for w in self.weights) and sum(self.weights) > 0),
             "--weights must be non-negative and not all zero")
        need(self.block_size is None or self.block_size >= 1, "--block-size must be positive")
        need(self.batch_size >= 1, "--batch-size must be positive")
        need(self.grad_accum >= 1, "--grad-accum must be positive")
        need(self.max_steps >= 1, "--max-steps must be positive")
        need(self.stop_at is None or 1 <= self.stop_at <= self.max_steps, "--stop-at must lie in [1, max_steps]")
        need(self.lr > 0, "--lr must be positive")
        need(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must lie in [0, 1]")
        need(self.warmup >= 0, "--warmup must be >= 0")
        need(self.eval_every >= 1 and self.log_every >= 1 and self.checkpoint_every >= 1,
             "--eval-every, --log-every and --checkpoint-every must be positive")
        need(self.eval_blocks >= 1, "eval_blocks must be positive")
        need(self.keep >= 2, "--keep must be at least 2 (a crash while writing one checkpoint keeps the other)")
        need(self.workers >= 0, "--workers must be >= 0")
        need(self.device in ("auto", "cpu", "cuda"), f"--device {self.device!r}: expected auto, cpu or cuda")
        need(self.precision in ("auto", "bf16", "fp16", "fp32"), f"--precision {self.precision!r}: expected auto, bf16, fp16 or fp32")
        need(0 <= self.dropout < 1, "dropout must lie in [0, 1)")
        need(self.pad_vocab_to >= 1, "pad_vocab_to must be positive")
        need(self.model is not None or self.init_from is not None, "give --model or --init-from")

    def to_json(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


FIELDS = {f.name for f in fields(TrainConfig)}
_TUPLES = {"data", "weights"}


def load_toml(path: Path) -> dict[str, Any]:
    """Settings from a TOML file: the same names as the flags (dashes or underscores)."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"--config {path}: not valid TOML ({e})") from None
    return normalize(raw, f"--config {path}")


def normalize(raw: dict[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise UsageError(f"{where}: unknown setting {key!r}")
        if name in _TUPLES and value is not None:
            value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        out[name] = value
    return out


def resolve(file_settings: dict[str, Any], flags: dict[str, Any]) -> TrainConfig:
    """Defaults, then the file, then the flags that were given (None means not given)."""
    merged = dict(file_settings)
    merged.update({k: v for k, v in flags.items() if v is not None and v != ()})
    for required in ("data", "out"):
        if not merged.get(required):
            raise UsageError(f"missing --{required} (on the command line or in --config)")
    try:
        return TrainConfig(**merged)
    except TypeError as e:
        raise UsageError(f"bad settings: {e}") from None
