"""Everything `train` can check before torch loads: settings, datasets, the run directory, the resume.

A mistake that the manifests, the flags or a checkpoint's meta.json reveal is reported in well
under a second, not after torch and transformers have loaded (seconds on a quiet machine,
minutes on a busy one). Nothing here imports torch; the loop receives the resulting Plan.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shards import Dataset
from shards.errors import UsageError
from shards.lock import DirectoryLock
from train.checkpoint import Checkpoint, Checkpointer, read as read_checkpoint
from train.config import PER_INVOCATION, TrainConfig, load_toml, normalize, resolve
from train.presets import PRESETS
from train.resume import check_resume
from train.rundata import RunData, open_data
from train.sampling import EpochPlan, num_blocks

CONFIG = "config.json"


@dataclass(frozen=True, slots=True)
class Weights:
    """Where a model's starting weights come from: a Hugging Face directory or a checkpoint."""

    kind: str  # "hf" or "checkpoint"
    path: Path
    checkpoint: Checkpoint | None = None


@dataclass(slots=True)
class Plan:
    cfg: TrainConfig
    data: RunData
    block_size: int
    resume: Checkpoint | None = None
    init: Weights | None = None
    lock: DirectoryLock | None = None
    notes: list[str] = field(default_factory=list)  # said when training starts

    @property
    def finished(self) -> bool:
        """The run being resumed already took its last step."""
        return self.resume is not None and self.resume.step >= self.cfg.max_steps

    @property
    def final_complete(self) -> bool:
        return Checkpointer(self.cfg.out).final_complete()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def prepare(config_file: Path | None, flags: dict[str, Any]) -> Plan:
    """The checked plan of a `train` invocation; UsageError / ShardFormatError name any problem."""
    return plan_of(load_config(config_file, flags))


def plan_of(cfg: TrainConfig) -> Plan:
    """The checked plan of a resolved config (what `prepare` does after reading the settings).
    Holds the run directory's lock, on rank 0: `train.loop.run` releases it."""
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.eval_only:
        return _eval_plan(cfg)
    data = open_data(cfg)
    run_dir = Path(cfg.out)
    created = not run_dir.exists()
    lock = None
    try:
        if rank == 0:  # one writer per run directory: the kernel lock, gone with the process
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = DirectoryLock(run_dir, "train").acquire()
        plan = _train_plan(cfg, data, world_size)
    except BaseException:
        if lock is not None:
            lock.release()
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # refused before writing anything: leave no empty run behind
        raise
    plan.lock = lock
    return plan


def load_config(config_file: Path | None, flags: dict[str, Any]) -> TrainConfig:
    """Defaults < the run's saved config (on --resume) < the TOML file < the flags given."""
    settings = load_toml(config_file) if config_file else {}
    out = flags.get("out") or settings.get("out")
    resume = flags.get("resume") or settings.get("resume")
    saved_path = Path(out) / CONFIG if out else None
    base: dict[str, Any] = {}
    if resume and saved_path is not None and saved_path.is_file():
        try:
            saved = json.loads(saved_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{saved_path}: not valid JSON ({e}); the run's settings are lost: start a new "
                             "--out, or restore config.json from a checkpoint's meta.json") from None
        base = {k: v for k, v in normalize(saved, str(saved_path)).items() if k not in PER_INVOCATION}
    return resolve({**base, **settings}, flags)


def _train_plan(cfg: TrainConfig, data: RunData, world_size: int) -> Plan:
    ckpt = Checkpointer(cfg.out, cfg.keep)
    latest = ckpt.latest()  # CheckpointError (naming it and the way back) when the newest is broken
    if latest is not None and not cfg.resume:
        raise UsageError(f"--out {cfg.out} already holds checkpoints (newest: {latest.path.name}); pass --resume to "
                         "continue that run, or choose another --out")
    notes = check_resume(cfg, latest, data, world_size) if latest is not None else []
    stop = cfg.stop_at or cfg.max_steps
    if latest is not None and latest.step < cfg.max_steps and latest.step >= stop:
        raise UsageError(f"--stop-at {stop}: the run in {cfg.out} is already at step {latest.step}")
    if latest is not None:
        # A resumed run continues its own weights, in the shape its checkpoint records: the
        # --model file or --init-from directory it started from may be gone or changed since.
        init = Weights("checkpoint", latest.path, latest)
    else:
        init = resolve_weights(cfg.init_from, "--init-from") if cfg.init_from else None
        if init is not None:
            _check_init(init, data)
    block_size = _block_size(cfg, init)
    _check_sizes(cfg, data, block_size, world_size)
    return Plan(cfg, data, block_size, resume=latest, init=init, notes=notes)


def _eval_plan(cfg: TrainConfig) -> Plan:
    data = RunData([], Dataset(cfg.valid))  # the training data plays no part
    init = resolve_weights(cfg.init_from, "--init-from")
    block_size = _block_size(cfg, init)
    if num_blocks(data.valid.num_tokens, block_size) < 1:
        raise UsageError(f"--valid {data.valid.path}: block size {block_size} needs more than its "
                         f"{data.valid.num_tokens} tokens")
    _check_init(init, data)
    return Plan(cfg, data, block_size, init=init)


def resolve_weights(given: str, flag: str) -> Weights:
    """A Hugging Face model directory, a checkpoint directory, or a run directory (its complete
    final/ if there is one, else its newest complete checkpoint)."""
    path = Path(given)
    if not path.is_dir():
        raise UsageError(f"{flag} {given}: no such directory (a RUN, RUN/final or RUN/checkpoints/step_N)")
    if (path / "state.pt").exists() or (path / "meta.json").exists():
        return Weights("checkpoint", path, read_checkpoint(path))
    ckpt = Checkpointer(path)
    if ckpt.root.is_dir() or ckpt.final.is_dir():  # a run directory (its config.json is not a model's)
        if ckpt.final_complete():
            return Weights("hf", ckpt.final)
        latest = ckpt.latest()
        if latest is not None:
            return Weights("checkpoint", latest.path, latest)
    elif (path / "config.json").is_file():
        return Weights("hf", path)
    raise UsageError(f"{flag} {given}: holds no model: not a Hugging Face model directory, a checkpoint, or a run "
                     "with a complete final/ or checkpoint")


def model_context(cfg_model: str, init: Weights | None) -> int:
    """The model's n_positions, read from a preset, a GPT2Config JSON, config.json or meta.json."""
    if init is not None and init.kind == "hf":
        return int(_json(init.path / "config.json", "--init-from").get("n_positions", 1024))
    if init is not None:
        return int(init.checkpoint.meta["model"]["n_positions"])
    if cfg_model in PRESETS:
        return PRESETS[cfg_model]["n_positions"]
    path = Path(cfg_model)
    if not path.is_file():
        raise UsageError(f"--model {cfg_model}: not a preset ({', '.join(PRESETS)}) and no such JSON file")
    shape = _json(path, "--model")
    n = shape.get("n_positions", 1024)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UsageError(f"--model {cfg_model}: n_positions {n!r} is not a positive integer")
    return n


def _json(path: Path, flag: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{flag} {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{flag} {path}: expected a JSON object of GPT2Config fields")
    return data


def _block_size(cfg: TrainConfig, init: Weights | None) -> int:
    context = model_context(cfg.model, init)
    block_size = cfg.block_size or context
    if block_size > context:
        raise UsageError(f"--block-size {block_size} is above the model's context of {context} tokens")
    return block_size


def _check_sizes(cfg: TrainConfig, data: RunData, block_size: int, world_size: int) -> None:
    """Each dataset must give at least one whole step (BlockDataset's own rule, checked early)."""
    if len(data.train) == 1:
        ds = data.train[0]
        n = num_blocks(ds.num_tokens, block_size)
        if EpochPlan(n, world_size, cfg.batch_size, cfg.grad_accum).batches_per_rank == 0:
            raise UsageError(f"--data {ds.path}: {n} blocks of {block_size} tokens cannot give world_size "
                             f"{world_size} x batch_size {cfg.batch_size} x grad_accum {cfg.grad_accum} blocks per "
                             "step; use a smaller block or batch size, or more data")
    for ds in data.train:
        if num_blocks(ds.num_tokens, block_size) < 1:
            raise UsageError(f"--data {ds.path}: block size {block_size} needs more than its {ds.num_tokens} tokens")
    if data.valid is not None and num_blocks(data.valid.num_tokens, block_size) < 1:
        raise UsageError(f"--valid {data.valid.path}: block size {block_size} needs more than its "
                         f"{data.valid.num_tokens} tokens")


def _check_init(init: Weights, data: RunData) -> None:
    vocab = data.first.vocab_size
    if init.kind == "hf":
        config = _json(init.path / "config.json", "--init-from")
        if config.get("model_type", "gpt2") != "gpt2":
            raise UsageError(f"--init-from {init.path}: model_type {config.get('model_type')!r} is not gpt2")
        if int(config.get("vocab_size", 0)) < vocab:
            raise UsageError(f"--init-from {init.path}: its vocabulary has {config.get('vocab_size')} tokens, the "
                             f"dataset's tokenizer {vocab}; they must be the same tokenizer")
        return
    theirs = init.checkpoint.meta.get("tokenizer_sha256")
    if theirs != data.tokenizer_sha256:
        raise UsageError(f"--init-from {init.path}: trained with another tokenizer (sha256 {str(theirs)[:12]}) than "
                         f"the data's ({data.tokenizer_sha256[:12]}); preprocess the data with that run's tokenizer")
