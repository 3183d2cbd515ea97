"""Training settings: one frozen dataclass, the single source of every `train` option and default.

Each field carries its help text and click type in its metadata; `train.cli` builds the command's
options from them, so the help's `[8]`-style defaults are read from here and cannot drift.
Settings are filled from defaults < the run's saved config (on --resume) < a TOML file < flags.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import click

from shards.errors import UsageError

PRESET_NAMES = "gpt2-tiny, gpt2-mini, gpt2-small (124M), gpt2-medium, gpt2-large, gpt2-xl"
# Settings that decide which tokens each step sees: a resumed run may not change them. (The
# split of the global batch, world_size x batch_size x grad_accum, may change: see resume.py.)
DATA_ORDER = ("weights", "block_size", "seed")
# The learning-rate schedule lr_at(step) is a pure function of these: fixed for a run's life.
SCHEDULE = ("max_steps", "lr", "warmup", "min_lr_ratio")
# The model a run trains: a resume continues the checkpoint's own, so these cannot change.
MODEL = ("model", "init_from", "pad_vocab_to")
# Settings of one invocation, not of the run: never taken from a saved config.
PER_INVOCATION = ("stop_at", "resume", "allow_data_change", "eval_only")


def setting(default: Any, help: str, *, type: Any = None, flag: str | None = None, metavar: str | None = None,
            shown: str | None = None, cli: bool = True, negatable: bool = False) -> Any:
    """A field with its command-line option: `help`, a click `type`, and how its default is shown."""
    meta = {"help": help, "type": type, "flag": flag, "metavar": metavar, "shown": shown, "cli": cli,
            "negatable": negatable}
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple for sequence defaults")
    return field(default=default, metadata=meta)


POSITIVE = click.IntRange(min=1)
NON_NEGATIVE = click.IntRange(min=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    data: tuple[str, ...] = setting((), "Dataset directory from `preprocess` (repeat to mix several, see --weights).",
                                    metavar="DIR", shown="")
    out: str = setting("", "Run directory: config, metrics, checkpoints, final/ model.", metavar="RUN", shown="")
    valid: str | None = setting(None, "Validation dataset (same tokenizer) for evaluation.", metavar="DIR", shown="")
    weights: tuple[float, ...] | None = setting(
        None, "Mixing proportions of the --data datasets.", metavar="W1,W2,...", shown="by their sizes")
    model: str = setting("gpt2-tiny", f"A preset ({PRESET_NAMES}) or a GPT2Config JSON file.", metavar="PRESET|JSON")
    init_from: str | None = setting(
        None, "Start from these weights: a Hugging Face GPT-2 directory (e.g. RUN/final) or a checkpoint "
              "(RUN/checkpoints/step_N).", metavar="DIR", shown="")
    block_size: int | None = setting(None, "Tokens per sequence.", type=POSITIVE, shown="the model's context")
    batch_size: int = setting(8, "Sequences per micro-batch per process.", type=POSITIVE)
    grad_accum: int = setting(1, "Micro-batches per optimizer step.", type=POSITIVE)
    max_steps: int = setting(1000, "Optimizer steps of the whole run; the schedule decays to its floor here.",
                             type=POSITIVE)
    stop_at: int | None = setting(None, "Stop cleanly after this step (resume later); the schedule still spans "
                                        "--max-steps.", type=POSITIVE, shown="")
    lr: float = setting(6e-4, "Peak learning rate.", type=click.FloatRange(min=0, min_open=True))
    min_lr_ratio: float = setting(0.1, "Cosine floor as a fraction of --lr.", type=click.FloatRange(0, 1))
    warmup: int = setting(100, "Linear warmup steps (must be below --max-steps).", type=NON_NEGATIVE)
    weight_decay: float = setting(0.1, "AdamW decay of matrices and embeddings (never biases or norms).",
                                  type=click.FloatRange(min=0))
    beta1: float = setting(0.9, "AdamW beta1.", type=click.FloatRange(0, 1, max_open=True))
    beta2: float = setting(0.95, "AdamW beta2.", type=click.FloatRange(0, 1, max_open=True))
    grad_clip: float = setting(1.0, "Clip the global gradient norm to this; 0 = off.", type=click.FloatRange(min=0))
    dropout: float = setting(0.0, "Dropout everywhere in the model; 0 for pretraining.",
                             type=click.FloatRange(0, 1, max_open=True))
    eval_every: int = setting(200, "Evaluate on --valid every N steps (and at step 0 and at the end).", type=POSITIVE)
    eval_blocks: int = setting(200, "Validation blocks in the fixed evaluation set (spread evenly over --valid).",
                               type=POSITIVE)
    log_every: int = setting(10, "Log every N steps.", type=POSITIVE)
    checkpoint_every: int = setting(500, "Checkpoint every N steps.", type=POSITIVE)
    keep: int = setting(3, "Complete checkpoints kept (at least 2).", type=click.IntRange(min=2))
    seed: int = setting(1337, "Seed of the model init and the data order.", type=int)
    workers: int = setting(2, "DataLoader worker processes per process (0 reads in the training process).",
                           type=NON_NEGATIVE)
    threads: int | None = setting(
        None, "CPU threads of each training process (torch intra-op).", type=POSITIVE,
        shown="auto: this process's share of the cores, divided among the node's training processes")
    device: str = setting("auto", "Where to train.", type=click.Choice(["auto", "cpu", "cuda"]))
    precision: str = setting("auto", "Number format.", type=click.Choice(["auto", "bf16", "fp16", "fp32"]),
                             shown="auto: bf16 on GPUs that have it, else fp16; fp32 on CPU")
    compile: bool = setting(False, "torch.compile the model.", negatable=True, shown="off")
    pad_vocab_to: int = setting(64, "Round the embedding up to a multiple of this (GPU speed); final/ is trimmed.",
                                type=POSITIVE, cli=False)
    sample_tokens: int = setting(60, "Tokens of the sample printed at the end (0 to skip).", type=NON_NEGATIVE)
    sample_prompt: str | None = setting(None, "Prompt of that sample.", shown="a document start")
    resume: bool = setting(False, "Continue from the newest complete checkpoint in RUN (--data may point at the "
                                  "datasets' new place).", shown="")
    allow_data_change: bool = setting(False, "Resume even if the datasets' fingerprints differ from the "
                                             "checkpoint's.", shown="")
    eval_only: bool = setting(False, "Only evaluate --init-from (RUN, RUN/final or a checkpoint) on --valid and "
                                     "print loss and perplexity; writes nothing.", shown="")

    def __post_init__(self) -> None:
        for name in ("data", "weights"):  # JSON and TOML give lists; a frozen config holds tuples
            value = getattr(self, name)
            if isinstance(value, (list, str)):
                object.__setattr__(self, name, tuple(value) if isinstance(value, list) else (value,))

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise UsageError(msg)

        for f in fields(self):  # TOML and saved configs bypass click's checks: types first
            _check_type(f.name, getattr(self, f.name), f.default)
        if self.eval_only:
            need(self.valid is not None, "--eval-only needs --valid DIR to evaluate on")
            need(self.init_from is not None, "--eval-only needs --init-from (RUN, RUN/final or RUN/checkpoints/step_N)")
        else:
            need(len(self.data) >= 1, "give at least one --data DIR")
            need(bool(self.out), "missing --out RUN (on the command line or in --config)")
        need(self.weights is None or len(self.weights) == len(self.data),
             f"--weights has {len(self.weights or ())} values for {len(self.data)} --data directories")
        need(self.weights is None or (all(w >= 0 for w in self.weights) and sum(self.weights) > 0),
             "--weights must be non-negative and not all zero")
        need(self.block_size is None or self.block_size >= 1, "--block-size must be positive")
        for name in ("batch_size", "grad_accum", "max_steps", "eval_every", "log_every", "checkpoint_every",
                     "eval_blocks", "pad_vocab_to"):
            need(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be positive")
        need(self.stop_at is None or 1 <= self.stop_at <= self.max_steps,
             f"--stop-at {self.stop_at} must lie in [1, --max-steps {self.max_steps}]")
        need(self.lr > 0 and math.isfinite(self.lr), "--lr must be a positive number")
        need(0 <= self.min_lr_ratio <= 1, "--min-lr-ratio must lie in [0, 1]")
        need(0 <= self.warmup < self.max_steps,
             f"--warmup {self.warmup} must be below --max-steps {self.max_steps}: the run would never reach its "
             "peak learning rate or its floor; lower --warmup or raise --max-steps")
        need(self.weight_decay >= 0 and self.grad_clip >= 0, "--weight-decay and --grad-clip must be >= 0")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must lie in [0, 1)")
        need(self.keep >= 2, "--keep must be at least 2 (a crash while writing one checkpoint keeps the other)")
        need(self.workers >= 0, "--workers must be >= 0")
        need(self.threads is None or self.threads >= 1, "--threads must be positive")
        need(self.device in ("auto", "cpu", "cuda"), f"--device {self.device!r}: expected auto, cpu or cuda")
        need(self.precision in ("auto", "bf16", "fp16", "fp32"),
             f"--precision {self.precision!r}: expected auto, bf16, fp16 or fp32")
        need(0 <= self.dropout < 1, "--dropout must lie in [0, 1)")
        need(self.sample_tokens >= 0, "--sample-tokens must be >= 0")

    def to_json(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def _check_type(name: str, value: Any, default: Any) -> None:
    """Values from TOML or JSON must have the field's type (click checks only the flags)."""
    if value is None or name in ("data", "weights"):
        return
    kind = type(default) if default is not None else None
    if name in ("block_size", "stop_at", "threads"):
        kind = int
    elif name in ("valid", "init_from", "sample_prompt"):
        kind = str
    if kind is None:
        return
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise UsageError(f"setting {name!r}: expected {kind.__name__}, got {value!r}")


FIELDS = {f.name: f for f in fields(TrainConfig)}
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
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: expected a table of settings")
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
    try:
        return TrainConfig(**merged)
    except TypeError as e:
        raise UsageError(f"bad settings: {e}") from None
