"""The training loop, top to bottom: data, model, resume, steps, evaluation, checkpoints, final model."""

from __future__ import annotations

import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader

from shards.console import Progress, human
from shards.errors import UsageError
from shards.manifest import write_json_atomic
from train import checkpoint
from train.config import TrainConfig
from train.data import RunData, open_data, train_stream
from train.dataset import as_is
from train.evaluate import EvalSet, evaluate
from train.metrics import Metrics, flops_per_token, peak_flops
from train.model import Vocab, build_model, next_token_loss, trimmed_for_release
from train.optim import make_optimizer, make_scheduler
from train.runtime import (Runtime, StopSignal, agree, ignore_signals_in_worker, rng_state, seed_everything,
                           set_rng_state, setup, teardown)

FINAL = "final"
CONFIG = "config.json"


@dataclass(frozen=True, slots=True)
class Result:
    step: int
    finished: bool  # reached max_steps (else stopped early by a signal or --stop-at)
    eval_loss: float | None
    final_dir: Path | None
    sample: str | None


def run(cfg: TrainConfig, quiet: bool = False, batches: Iterator[dict[str, torch.Tensor]] | None = None) -> Result:
    """Train as `cfg` says. `batches` replaces the data loader (benchmarks feed synthetic
    batches already on the GPU through it, to measure what the loader costs)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's bars would tangle with ours
    rt = setup(cfg.device, cfg.precision)
    try:
        return _train(cfg, rt, quiet, batches)
    finally:
        teardown()


def _train(cfg: TrainConfig, rt: Runtime, quiet: bool, source: Iterator | None) -> Result:
    say = (lambda *a: print(*a, flush=True)) if rt.main and not quiet else (lambda *a: None)
    run_dir = Path(cfg.out)

    # -- data: every check that can fail happens before any model is built ----------------------
    data = open_data(cfg)
    m = data.train[0].manifest
    vocab = Vocab(size=m.vocab_size, bos_id=m.raw["tokenizer"].get("bos_id"), eos_id=m.eos_id)
    resume_from = _resume_point(cfg, run_dir)

    # -- model, optimizer, schedule ---------------------------------------------------------------
    seed_everything(cfg.seed)
    model = build_model(cfg.model, cfg.init_from, vocab, dropout=cfg.dropout, pad_vocab_to=cfg.pad_vocab_to,
                        tokenizer_dir=data.train[0].tokenizer_dir)
    context = model.config.n_positions
    block_size = cfg.block_size or context
    if block_size > context:
        raise UsageError(f"--block-size {block_size} is above the model's context of {context} tokens")
    model.to(rt.device)
    optimizer = make_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2),
                               device=rt.device)
    scheduler = make_scheduler(optimizer, warmup=cfg.warmup, max_steps=cfg.max_steps, min_ratio=cfg.min_lr_ratio)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    step, tokens_seen, batches_done = 0, 0, 0
    # Losses since the last log line, (sum, steps): training state, saved with checkpoints so a
    # resumed run logs the very averages an uninterrupted one does.
    loss_window = (0.0, 0)
    if resume_from is not None:
        step, tokens_seen, batches_done, loss_window = _restore(resume_from, cfg, rt, data, model, optimizer,
                                                                scheduler, scaler)
        say(f"resumed from {resume_from} (step {step}, {tokens_seen:,} tokens seen)")
    stop_step = cfg.stop_at or cfg.max_steps
    if step >= cfg.max_steps:
        say(f"the run in {run_dir} already finished at step {step} (--max-steps {cfg.max_steps}); "
            "raise --max-steps to train further")
        return Result(step, True, None, run_dir / FINAL if (run_dir / FINAL).is_dir() else None, None)
    if step >= stop_step:
        raise UsageError(f"--stop-at {stop_step}: the run in {run_dir} is already at step {step}")
    raw_model = model
    if cfg.compile:
        model = torch.compile(model)
    if rt.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)

    # -- data loading -------------------------------------------------------------------------------
    stream = train_stream(cfg, data, block_size, rt, batches_done)
    evalset = EvalSet(str(data.valid.path), block_size, cfg.eval_blocks, rt) if data.valid else None
    # collate_fn=as_is: batches are made whole by the dataset (default_convert would only copy).
    loader = DataLoader(stream, batch_size=None, num_workers=cfg.workers, pin_memory=rt.device.type == "cuda",
                        collate_fn=as_is, worker_init_fn=ignore_signals_in_worker,
                        prefetch_factor=4 if cfg.workers else None)
    batches = iter(loader) if source is None else source

    if rt.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / CONFIG, cfg.to_json())
    metrics = Metrics(run_dir, rt.main, keep_until=step if resume_from is not None else None)
    n_params = sum(p.numel() for p in raw_model.parameters())
    fpt = flops_per_token(n_params, raw_model.config.n_layer, raw_model.config.n_embd, block_size)
    peak = peak_flops(rt.device, rt.amp_dtype)
    tokens_per_step = cfg.batch_size * block_size * cfg.grad_accum * rt.world_size
    say(f"training {n_params / 1e6:.1f}M parameters on {rt.device} x{rt.world_size} "
        f"({'fp32' if rt.amp_dtype is None else str(rt.amp_dtype).split('.')[-1]}), block {block_size}, "
        f"{tokens_per_step:,} tokens/step, steps {step} -> {stop_step} of {cfg.max_steps}")

    eval_loss = None
    if evalset is not None and step == 0:
        eval_loss, ppl = evaluate(model, evalset, cfg.batch_size, rt)
        metrics.log({"step": 0, "eval_loss": eval_loss, "eval_ppl": ppl})
        say(f"step 0 | eval loss {eval_loss:.4f} | ppl {ppl:.2f}")

    stop = StopSignal(say if rt.main else (lambda *a: None))
    bar = Progress(cfg.max_steps, " steps", label="train", enabled=False if (quiet or not rt.main) else None)
    bar.done = step
    window = {"t": time.perf_counter(), "wait": 0.0, "tokens": 0}  # throughput since the last log
    loss_acc = torch.tensor(loss_window[0], dtype=torch.float32, device=rt.device)
    loss_steps = loss_window[1]
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(rt.device)
    model.train()
    stopped_early = False
    try:
        while step < stop_step:
            # -- one optimizer step over grad_accum micro-batches ----------------------------------
            for micro in range(cfg.grad_accum):
                t_wait = time.perf_counter()
                batch = next(batches)
                window["wait"] += time.perf_counter() - t_wait
                x = batch["input_ids"].to(rt.device, non_blocking=True)  # (b, B) int64
                y = batch["labels"].to(rt.device, non_blocking=True)  # (b, B) int64, already shifted
                last = micro == cfg.grad_accum - 1
                sync = model.no_sync() if rt.distributed and not last else nullcontext()
                with sync:
                    with rt.autocast():
                        logits = model(x).logits
                    loss = next_token_loss(logits, y) / cfg.grad_accum
                    scaler.scale(loss).backward()
                loss_acc += loss.detach()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(),
                                                       cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            batches_done += cfg.grad_accum
            tokens_seen += tokens_per_step
            window["tokens"] += tokens_per_step
            loss_steps += 1
            bar.advance(1)

            # -- logging, evaluation, checkpoints ----------------------------------------------------
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                record = _log_record(step, loss_acc / loss_steps, window, grad_norm, scheduler, rt, fpt, peak)
                loss_acc.zero_()
                loss_steps = 0
                metrics.log(record)
                bar.note(f"loss {record['loss']:.3f}  {human(record['tokens_per_s'])} tok/s")
                _print_line(bar, say, record)
                window = {"t": time.perf_counter(), "wait": 0.0, "tokens": 0}
            if evalset is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                eval_loss, ppl = evaluate(model, evalset, cfg.batch_size, rt)
                metrics.log({"step": step, "eval_loss": eval_loss, "eval_ppl": ppl})
                _print_line(bar, say, {"step": step, "eval_loss": eval_loss, "eval_ppl": ppl})
            stopping = agree(stop.requested, rt) or step == stop_step
            if step % cfg.checkpoint_every == 0 or stopping:
                path = _save(run_dir, step, tokens_seen, batches_done, (loss_acc.item(), loss_steps), cfg, rt, data,
                             raw_model, optimizer, scheduler, scaler)
                if step % cfg.checkpoint_every != 0:
                    _print_line(bar, say, {"step": step, "checkpoint": str(path)})
            if stopping and step < cfg.max_steps:
                stopped_early = True
                break
    finally:
        stop.restore()
        bar.close()
        plot = metrics.close()
        del batches  # shuts the DataLoader workers down after the last checkpoint
    if plot is not None:
        say(f"loss curve: {plot}")
    if stopped_early:
        say(f"stopped at step {step}; continue with: train --out {run_dir} --resume")
        return Result(step, False, eval_loss, None, None)
    final_dir, sample = _release(run_dir, cfg, rt, data, raw_model, vocab, step, tokens_seen, say)
    return Result(step, True, eval_loss, final_dir, sample)


def _resume_point(cfg: TrainConfig, run_dir: Path) -> Path | None:
    latest = checkpoint.latest(run_dir)
    if latest is not None and not cfg.resume:
        raise UsageError(f"--out {run_dir} already holds checkpoints (newest: {latest.name}); pass --resume to "
                         "continue that run, or choose another --out")
    return latest if cfg.resume else None


def _restore(path, cfg, rt, data: RunData, model, optimizer, scheduler, scaler) -> tuple[int, int, int, tuple]:
    state, meta = checkpoint.load(path)
    if meta["world_size"] != rt.world_size:
        raise UsageError(f"{path} was written by {meta['world_size']} processes, this run has {rt.world_size}; "
                         "resume with the same number (torchrun --nproc-per-node)")
    if meta["fingerprints"] != data.fingerprints and not cfg.allow_data_change:
        raise UsageError(f"the datasets' fingerprints differ from those in {path} (the data changed since the run "
                         "started); pass --allow-data-change to resume anyway")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    mine = state["ranks"][rt.rank]
    set_rng_state(mine["rng"])
    return meta["step"], meta["tokens_seen"], meta["data"]["batches"], tuple(mine["loss_window"])


def _save(run_dir, step, tokens_seen, batches_done, loss_window, cfg, rt, data, model, optimizer, scheduler,
          scaler) -> Path | None:
    mine = {"rng": rng_state(), "loss_window": list(loss_window)}  # what differs between ranks
    ranks = [None] * rt.world_size
    if rt.distributed:
        torch.distributed.all_gather_object(ranks, mine)
    else:
        ranks = [mine]
    path = None
    if rt.main:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "ranks": ranks}
        meta = {"step": step, "tokens_seen": tokens_seen, "data": {"batches": batches_done},
                "fingerprints": data.fingerprints, "world_size": rt.world_size, "config": cfg.to_json(),
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        path = checkpoint.save(run_dir, step, state, meta, cfg.keep)
    if rt.distributed:
        torch.distributed.barrier()  # nobody runs ahead of a checkpoint that may be needed
    return path


def _log_record(step, loss, window, grad_norm, scheduler, rt, fpt, peak) -> dict[str, Any]:
    if rt.distributed:
        torch.distributed.all_reduce(loss)
        loss = loss / rt.world_size
    elapsed = max(time.perf_counter() - window["t"], 1e-9)
    tps = window["tokens"] / elapsed
    # The loss keeps full precision: resumed runs are compared with it bit for bit.
    record = {"step": step, "loss": loss.item(), "lr": scheduler.get_last_lr()[0],
              "grad_norm": round(float(grad_norm), 6), "tokens_per_s": round(tps, 1),
              "data_wait": round(window["wait"] / elapsed, 4)}
    if peak is not None:
        record["mfu"] = round(fpt * tps / rt.world_size / peak, 4)
    if rt.device.type == "cuda":
        record["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(rt.device) / 2**30, 2)
    return record


def _print_line(bar: Progress, say, record: dict[str, Any]) -> None:
    if "checkpoint" in record:
        line = f"step {record['step']} | checkpoint {record['checkpoint']}"
    elif "eval_loss" in record:
        line = f"step {record['step']} | eval loss {record['eval_loss']:.4f} | ppl {record['eval_ppl']:.2f}"
    else:
        parts = [f"step {record['step']}", f"loss {record['loss']:.4f}", f"lr {record['lr']:.2e}",
                 f"grad {record['grad_norm']:.3f}", f"{human(record['tokens_per_s'])} tok/s",
                 f"data wait {record['data_wait']:.1%}"]
        if "mfu" in record:
            parts.append(f"mfu {record['mfu']:.1%}")
        if "peak_mem_gb" in record:
            parts.append(f"mem {record['peak_mem_gb']:.1f}GB")
        line = " | ".join(parts)
    bar.above(lambda: say(line))


def _release(run_dir, cfg, rt, data, model, vocab: Vocab, step, tokens_seen, say):
    """Write RUN/final (model + the dataset's tokenizer), then print a generated sample."""
    if not rt.main:
        return None, None
    final = run_dir / FINAL
    tmp = run_dir / (FINAL + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = trimmed_for_release(model, vocab.size)
    model.save_pretrained(str(tmp))
    for f in data.train[0].tokenizer_dir.iterdir():
        shutil.copy2(f, tmp / f.name)
    info = {"fingerprints": data.fingerprints, "step": step, "tokens_seen": tokens_seen, "config": cfg.to_json()}
    (tmp / "shardtrain.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    say(f"final model: {final} (AutoModelForCausalLM.from_pretrained / AutoTokenizer.from_pretrained)")
    sample = _sample(final, model, cfg, vocab, rt) if cfg.sample_tokens > 0 else None
    if sample is not None:
        say(f"sample: {sample}")
    return final, sample


@torch.no_grad()
def _sample(final: Path, model, cfg: TrainConfig, vocab: Vocab, rt: Runtime) -> str:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(final))
    prompt = tok.encode(cfg.sample_prompt, add_special_tokens=False) if cfg.sample_prompt else []
    if not prompt:  # a document start: what follows an EOS
        prompt = [vocab.eos_id if vocab.eos_id is not None else (vocab.bos_id or 0)]
    model.eval()
    torch.manual_seed(cfg.seed)
    ids = torch.tensor([prompt], device=rt.device)
    # Generate past document ends (eos_token_id=None) and show them as line breaks.
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=cfg.sample_tokens,
                         do_sample=True, top_k=50, temperature=0.8, eos_token_id=None,
                         pad_token_id=vocab.eos_id if vocab.eos_id is not None else 0)
    new = out[0, len(prompt):].tolist()
    docs, current = [], []
    for t in new:
        if t == vocab.eos_id:
            docs.append(current)
            current = []
        else:
            current.append(t)
    docs.append(current)
    return (cfg.sample_prompt or "") + "\n".join(tok.decode(d, skip_special_tokens=True) for d in docs)
