"""The rules of `train --resume`, checked against the newest checkpoint before torch loads.

- Data by content: each dataset's fingerprint must match the checkpoint's, wherever the
  directories now are (--data may point at a new place); --allow-data-change resumes anyway.
- The global batch G = world_size x batch_size x grad_accum must stay the same: optimizer step s
  sees positions [s*G, (s+1)*G) of the data stream however G is split, so the number of processes,
  the batch size and the accumulation may change as long as their product does not.
- The data order (block size, seed, mixing weights), the learning-rate schedule (max_steps,
  lr, warmup, min_lr_ratio: lr_at(step) is a pure function of them), the model (its shape comes
  from the checkpoint) and the tokenizer are fixed for the run's life.
"""

from __future__ import annotations

from shards.errors import UsageError
from train.checkpoint import Checkpoint
from train.config import DATA_ORDER, MODEL, SCHEDULE, TrainConfig
from train.rundata import RunData


def check_resume(cfg: TrainConfig, ckpt: Checkpoint, data: RunData, world_size: int) -> list[str]:
    """Refuse a resume that would not continue the same run; return notes worth saying."""
    saved = ckpt.meta["config"]
    _same_settings(cfg, saved, ckpt)
    _same_tokenizer(ckpt, data)
    notes = _same_data(cfg, ckpt, data)
    notes += _same_global_batch(cfg, ckpt, world_size)
    return notes


def _same_settings(cfg: TrainConfig, saved: dict, ckpt: Checkpoint) -> None:
    current = cfg.to_json()
    for key in DATA_ORDER:
        if key in saved and saved[key] != current[key]:
            raise UsageError(f"--resume: {key} differs from the run's ({saved[key]!r} in {ckpt.path.name}, now "
                             f"{current[key]!r}); it decides which data each step sees. Start a new --out to change it")
    for key in MODEL:
        if key in saved and saved[key] != current[key]:
            raise UsageError(f"--resume: {key} differs from the run's ({saved[key]!r} in {ckpt.path.name}, now "
                             f"{current[key]!r}); a resumed run continues its own model, in the shape its checkpoint "
                             f"records. To start from its weights in another way: train --init-from {ckpt.path} "
                             "--out NEW_RUN")
    for key in SCHEDULE:
        if key in saved and saved[key] != current[key]:
            raise UsageError(
                f"--resume: {key} differs from the run's ({saved[key]!r} in {ckpt.path.name}, now {current[key]!r}); "
                "the learning-rate schedule is fixed for a run's life, so that no step's rate jumps. To train "
                f"further, start a new run from this one's weights: train --init-from {cfg.out} --out NEW_RUN "
                "(with its own --max-steps, --lr and --warmup)")


def _same_tokenizer(ckpt: Checkpoint, data: RunData) -> None:
    """Whatever the data, its ids must mean what they meant to the model: even with
    --allow-data-change, the tokenizer is the run's."""
    theirs = ckpt.meta.get("tokenizer_sha256")
    if theirs != data.tokenizer_sha256:
        raise UsageError(f"--resume: the datasets were tokenized with another tokenizer (sha256 "
                         f"{data.tokenizer_sha256[:12]}) than the run in {ckpt.path} (sha256 {str(theirs)[:12]}); "
                         "their ids mean other tokens to the model, and --allow-data-change cannot change that: "
                         "preprocess the data with the run's tokenizer (RUN/final or its datasets' tokenizer/)")


def _same_data(cfg: TrainConfig, ckpt: Checkpoint, data: RunData) -> list[str]:
    saved = ckpt.meta["fingerprints"]
    now = data.fingerprints
    if len(saved["data"]) != len(now["data"]):
        raise UsageError(f"--resume: the run trained on {len(saved['data'])} --data dataset(s) "
                         f"({ckpt.path.name}), now {len(now['data'])} are given")
    pairs = [(f"--data {d.path}", old, new) for d, old, new in zip(data.train, saved["data"], now["data"])]
    if data.valid is not None and saved["valid"] is not None:
        pairs.append((f"--valid {data.valid.path}", saved["valid"], now["valid"]))
    changed = [(flag, old, new) for flag, old, new in pairs if old != new]
    if not changed:
        return []
    flag, old, new = changed[0]
    if not cfg.allow_data_change:
        raise UsageError(f"{flag}: fingerprint {new} differs from {old} in {ckpt.path} (the data changed since the "
                         "run started); point --data/--valid at the run's datasets, or pass --allow-data-change "
                         "to resume on these")
    return [f"resuming on changed data ({', '.join(f for f, _, _ in changed)}; --allow-data-change): step "
            f"{ckpt.step} goes on from the same position in the new stream"]


def _same_global_batch(cfg: TrainConfig, ckpt: Checkpoint, world_size: int) -> list[str]:
    r, b, a = ckpt.layout
    was, now = r * b * a, world_size * cfg.batch_size * cfg.grad_accum
    if was != now:
        raise UsageError(
            f"--resume: world_size x batch_size x grad_accum must stay {was} (the run's {r} x {b} x {a}), now "
            f"{world_size} x {cfg.batch_size} x {cfg.grad_accum} = {now}: that product decides which blocks each step "
            "sees. Keep it (e.g. twice the --batch-size on half the processes), or start a new --out")
    if (r, b, a) != (world_size, cfg.batch_size, cfg.grad_accum):
        return [f"resuming on {world_size} process(es) x batch {cfg.batch_size} x accumulation {cfg.grad_accum} "
                f"(the checkpoint was written by {r} x {b} x {a}): the same {was} blocks per step"]
    return []
