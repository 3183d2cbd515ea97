"""The training loop, top to bottom: model -> resume -> steps (log, evaluate, checkpoint) -> final/.

`train.preflight.prepare` has checked everything that needs no torch; `run` takes its Plan.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader

from shards import __version__
from shards.console import Progress, human
from shards.errors import ShardFormatError
from shards.manifest import write_json_atomic
from train.checkpoint import Checkpointer, tensor_bytes
from train.dataset import as_is
from train.evaluate import EvalSet, evaluate
from train.meter import LossWindow, Throughput
from train.metrics import Metrics, flops_per_token, peak_flops
from train.model import Vocab, build_model, model_meta, next_token_loss, trimmed_for_release
from train.optim import make_optimizer
from train.preflight import CONFIG, Plan
from train.rundata import RunData, train_stream
from train.runtime import Runtime, StopSignal, agree, ignore_signals_in_worker, setup, teardown
from train.schedule import lr_at, schedule_of
from train.state import TrainState, seed_everything


class TrainingDiverged(ShardFormatError):
    """The loss or the gradient stopped being finite (exit 1)."""


@dataclass(frozen=True, slots=True)
class Result:
    step: int
    finished: bool  # reached max_steps (else stopped early by a signal or --stop-at)
    eval_loss: float | None
    final_dir: Path | None
    sample: str | None


def run(plan: Plan, quiet: bool = False, batches: Iterator[dict[str, torch.Tensor]] | None = None) -> Result:
    """Train (or only evaluate) as `plan` says. `batches` replaces the data loader (benchmarks feed
    synthetic batches already on the GPU through it, to measure what the loader costs)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's bars would tangle with ours
    cfg = plan.cfg
    try:
        rt = setup(cfg.device, cfg.precision, threads=cfg.threads)
        try:
            if cfg.eval_only:
                return evaluate_only(plan, rt)
            return train(plan, rt, quiet, batches)
        finally:
            teardown()
    finally:
        plan.release()


def train(plan: Plan, rt: Runtime, quiet: bool, source: Iterator | None) -> Result:
    cfg, data = plan.cfg, plan.data
    say = (lambda *a: print(*a, flush=True)) if rt.main and not quiet else (lambda *a: None)
    run_dir = Path(cfg.out)
    ckpt = Checkpointer(run_dir, cfg.keep)
    vocab = vocab_of(data)
    for note in plan.notes:
        say(f"note: {note}")

    # -- model, optimizer, state ------------------------------------------------------------------
    seed_everything(cfg.seed)
    model = build_model(cfg.model, plan.init, vocab, dropout=cfg.dropout, pad_vocab_to=cfg.pad_vocab_to,
                        tokenizer_dir=data.first.tokenizer_dir, weights=plan.resume is None)
    model.to(rt.device)
    optimizer = make_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2),
                               device=rt.device)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    state = TrainState()
    if plan.resume is not None:
        state = restore(ckpt, plan, rt=rt, model=model, optimizer=optimizer, scaler=scaler, say=say)
    if plan.finished:
        return finished_run(ckpt, plan=plan, rt=rt, model=model, vocab=vocab, state=state, say=say)
    raw_model = model
    if cfg.compile:
        model = torch.compile(model)
    if rt.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)

    # -- data -----------------------------------------------------------------------------------
    stream = train_stream(cfg, data, block_size=plan.block_size, rank=rt.rank, world_size=rt.world_size,
                          step=state.step)
    evalset = EvalSet(str(data.valid.path), plan.block_size, cfg.eval_blocks, rt) if data.valid else None
    # collate_fn=as_is: batches are made whole by the dataset (default_convert would only copy).
    # Its own generator: iter(loader) draws the workers' base seed, which must not consume the
    # global RNG (restored on resume, used by dropout) at a point a resumed run does not repeat.
    loader = DataLoader(stream, batch_size=None, num_workers=cfg.workers, pin_memory=rt.device.type == "cuda",
                        collate_fn=as_is, worker_init_fn=ignore_signals_in_worker,
                        prefetch_factor=4 if cfg.workers else None,
                        generator=torch.Generator().manual_seed(cfg.seed))
    batches = iter(loader) if source is None else source

    # -- what the run records ---------------------------------------------------------------------
    if rt.main:
        write_json_atomic(run_dir / CONFIG, cfg.to_json())
    n_params = sum(p.numel() for p in raw_model.parameters())
    tokens_per_step = cfg.batch_size * cfg.grad_accum * rt.world_size * plan.block_size
    precision = "fp32" if rt.amp_dtype is None else str(rt.amp_dtype).split(".")[-1]
    title = (f"{run_dir.name}: {cfg.init_from or cfg.model}, {n_params / 1e6:.1f}M parameters, block "
             f"{plan.block_size}, {tokens_per_step:,} tokens/step")
    metrics = Metrics(run_dir, rt.main, keep_until=state.step if plan.resume is not None else None, title=title)
    fpt = flops_per_token(n_params, raw_model.config.n_layer, raw_model.config.n_embd, plan.block_size)
    peak = peak_flops(rt.device, rt.amp_dtype)
    stop_step = cfg.stop_at or cfg.max_steps
    say(f"training {n_params / 1e6:.1f}M parameters on {rt.device} x{rt.world_size} ({precision}, "
        f"{rt.threads} thread{'s' if rt.threads > 1 else ''}), block {plan.block_size}, {tokens_per_step:,} "
        f"tokens/step, steps {state.step} -> {stop_step} of {cfg.max_steps}")

    bar = Progress(cfg.max_steps, " steps", label="train", enabled=False if (quiet or not rt.main) else None,
                   initial=state.step)
    show = lambda line: bar.above(lambda: say(line))  # noqa: E731
    eval_loss = None
    if evalset is not None and state.step == 0:
        eval_loss = evaluation(raw_model, evalset, step=0, cfg=cfg, rt=rt, metrics=metrics, show=show)
    stop = StopSignal()
    meter = Throughput()
    window = LossWindow(rt.device, state.loss_sum, state.loss_steps)
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(rt.device)
    schedule = schedule_of(cfg)
    model.train()
    stopped_early = False
    try:
        while state.step < stop_step:
            lr = lr_at(state.step, **schedule)
            loss, grad_norm = train_step(model, raw_model=raw_model, batches=batches, optimizer=optimizer,
                                         scaler=scaler, lr=lr, cfg=cfg, rt=rt, meter=meter)
            window.add(loss, None if scaler.is_enabled() else grad_norm)
            state.step += 1
            state.tokens_seen += tokens_per_step
            meter.add(tokens_per_step)
            bar.advance(1)
            if news := stop.news():
                show(news)
            last = state.step == cfg.max_steps
            if state.step % cfg.log_every == 0 or last:
                refuse_non_finite(window, step=state.step, ckpt=ckpt, rt=rt)
                record = log_record(state.step, loss=window.mean(), lr=lr, grad_norm=grad_norm,
                                    reading=meter.take(), rt=rt, flops_per_token=fpt, peak=peak)
                window.reset()
                metrics.log(record)
                bar.note(f"loss {record['loss']:.3f}  {human(record['tokens_per_s'])} tok/s")
                show(train_line(record))
            if evalset is not None and (state.step % cfg.eval_every == 0 or last):
                refuse_non_finite(window, step=state.step, ckpt=ckpt, rt=rt)  # no NaN model is evaluated
                with meter.paused():
                    eval_loss = evaluation(raw_model, evalset, step=state.step, cfg=cfg, rt=rt, metrics=metrics,
                                           show=show)
                    metrics.redraw(f"step {state.step:,} of {cfg.max_steps:,}, {human(state.tokens_seen)} tokens")
            stopping = agree(stop.requested is not None, rt) or state.step == stop_step
            if state.step % cfg.checkpoint_every == 0 or stopping:
                refuse_non_finite(window, step=state.step, ckpt=ckpt, rt=rt)
                with meter.paused() as took:
                    path = save_checkpoint(ckpt, state=state, window=window, plan=plan, rt=rt, model=raw_model,
                                           optimizer=optimizer, scaler=scaler)
                if rt.main:
                    metrics.log({"step": state.step, "checkpoint": str(path), "checkpoint_seconds": round(took(), 3)})
                    show(f"step {state.step} | checkpoint {path} | {took():.1f} s")
            if stopping and state.step < cfg.max_steps:
                stopped_early = True
                break
    finally:
        stop.restore()
        bar.close()
        metrics.redraw(f"step {state.step:,} of {cfg.max_steps:,}, {human(state.tokens_seen)} tokens")
        metrics.close()
        del batches  # shuts the DataLoader workers down after the last checkpoint
    if metrics.plot_path.exists() and rt.main:
        say(f"loss curve: {metrics.plot_path}")
    if stopped_early:
        say(f"stopped at step {state.step}; continue with: train --out {run_dir} --resume")
        return Result(state.step, False, eval_loss, None, None)
    final_dir, sample = release(ckpt, plan=plan, rt=rt, model=raw_model, vocab=vocab, state=state, say=say)
    return Result(state.step, True, eval_loss, final_dir, sample)


def train_step(model, *, raw_model, batches, optimizer, scaler, lr: float, cfg, rt: Runtime,
               meter: Throughput) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over cfg.grad_accum micro-batches at learning rate `lr`.

    Returns this process's step loss and the global gradient norm, both still on the device.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    step_loss = torch.zeros((), dtype=torch.float32, device=rt.device)
    for micro in range(cfg.grad_accum):
        with meter.waiting():
            batch = next(batches)
        x = batch["input_ids"].to(rt.device, non_blocking=True)  # (b, B) int64
        y = batch["labels"].to(rt.device, non_blocking=True)  # (b, B) int64, already shifted
        last = micro == cfg.grad_accum - 1
        with model.no_sync() if rt.distributed and not last else nullcontext():
            with rt.autocast():
                logits = model(x).logits
            loss = next_token_loss(logits, y) / cfg.grad_accum
            scaler.scale(loss).backward()
        step_loss += loss.detach()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(),
                                               cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return step_loss, grad_norm


def refuse_non_finite(window: LossWindow, *, step: int, ckpt: Checkpointer, rt: Runtime) -> None:
    """Stop the run, saving nothing, if a step since the last check had a non-finite loss or
    gradient: the checked flags are synchronized here, at log and checkpoint steps only."""
    reduce = None
    if rt.distributed:
        reduce = lambda t: torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)  # noqa: E731
    bad = window.first_bad(step, reduce)
    if bad is None:
        return
    good = ckpt.complete()
    where = (f"the newest good checkpoint is {good[-1]}: start a new run from it with a lower --lr "
             f"(train --init-from {good[-1]} --out NEW_RUN ...)") if good else "no checkpoint was written before it"
    raise TrainingDiverged(f"step {bad}: the training loss (or its gradient) is not finite; stopped without saving "
                           f"a checkpoint; {where}")


def log_record(step: int, *, loss: torch.Tensor, lr: float, grad_norm: torch.Tensor, reading, rt: Runtime,
               flops_per_token: float, peak: float | None) -> dict[str, Any]:
    if rt.distributed:
        torch.distributed.all_reduce(loss)
        loss = loss / rt.world_size
    tps = reading.tokens_per_s
    # The loss keeps full precision: resumed runs are compared with it bit for bit.
    norm = float(grad_norm)  # infinite now and then with fp16's scaler (it skips those steps): logged as null
    record = {"step": step, "loss": loss.item(), "lr": lr, "grad_norm": round(norm, 6) if math.isfinite(norm) else None,
              "tokens_per_s": round(tps, 1), "data_wait": round(reading.wait_share, 4),
              "train_seconds": round(reading.seconds, 4)}
    if peak is not None:
        record["mfu"] = round(flops_per_token * tps / rt.world_size / peak, 4)
    if rt.device.type == "cuda":
        record["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(rt.device) / 2**30, 2)
    return record


def train_line(record: dict[str, Any]) -> str:
    parts = [f"step {record['step']}", f"loss {record['loss']:.4f}", f"lr {record['lr']:.2e}",
             f"grad {record['grad_norm']:.3f}" if record["grad_norm"] is not None else "grad inf",
             f"{human(record['tokens_per_s'])} tok/s",
             f"data wait {record['data_wait']:.1%}"]
    if "mfu" in record:
        parts.append(f"mfu {record['mfu']:.1%}")
    if "peak_mem_gb" in record:
        parts.append(f"mem {record['peak_mem_gb']:.1f}GB")
    return " | ".join(parts)


def evaluation(model, evalset: EvalSet, *, step: int, cfg, rt: Runtime, metrics: Metrics, show) -> float:
    """Evaluate, log {"step", "eval_loss", "eval_ppl", "eval_seconds"} and print its own line."""
    t0 = time.perf_counter()
    loss, ppl = evaluate(model, evalset, cfg.batch_size, rt)
    took = time.perf_counter() - t0
    metrics.log({"step": step, "eval_loss": loss, "eval_ppl": ppl, "eval_seconds": round(took, 3)})
    show(f"step {step} | eval loss {loss:.4f} | ppl {ppl:.2f} | {took:.1f} s")
    return loss


def restore(ckpt: Checkpointer, plan: Plan, *, rt: Runtime, model, optimizer, scaler, say) -> TrainState:
    """Weights, optimizer, grad scaler and TrainState from the plan's checkpoint."""
    saved = ckpt.load_state(plan.resume)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    cfg = plan.cfg
    for group in optimizer.param_groups:  # the settings given now, not the ones saved with the state
        group["betas"] = (cfg.beta1, cfg.beta2)
        if group["weight_decay"]:
            group["weight_decay"] = cfg.weight_decay
    if scaler.is_enabled() and saved.get("scaler"):  # fp16 before and now; other precisions keep none
        scaler.load_state_dict(saved["scaler"])
    state, same = TrainState.restored(plan.resume.meta, saved["ranks"], rank=rt.rank, world_size=rt.world_size,
                                      seed=plan.cfg.seed)
    del saved
    say(f"resumed from {plan.resume.path} (step {state.step}, {state.tokens_seen:,} tokens seen)")
    if not same:
        say(f"note: {plan.resume.layout[0]} process(es) wrote the checkpoint, {rt.world_size} resume it: random "
            "states are seeded anew (only dropout uses them)")
    return state


def save_checkpoint(ckpt: Checkpointer, *, state: TrainState, window: LossWindow, plan: Plan, rt: Runtime, model,
                    optimizer, scaler) -> Path | None:
    """Every process contributes its RNG and loss window; rank 0 writes; all learn whether it could."""
    mine = state.rank_part(window.saved())
    ranks = [None] * rt.world_size
    if rt.distributed:
        torch.distributed.all_gather_object(ranks, mine)
    else:
        ranks = [mine]
    path, failure = None, None
    if rt.main:
        cfg = plan.cfg
        tensors = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                   "ranks": ranks}
        meta = {**state.meta(), "global_batch": rt.world_size * cfg.batch_size * cfg.grad_accum,
                "layout": {"world_size": rt.world_size, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum},
                "fingerprints": plan.data.fingerprints, "tokenizer_sha256": plan.data.tokenizer_sha256,
                "datasets": [str(d.path.resolve()) for d in plan.data.train], "model": model_meta(model),
                "config": cfg.to_json(), "tool": {"name": "shardtrain", "version": __version__}}
        try:
            path = ckpt.save(state.step, tensors, meta)  # a full disk: one line, nothing kept (checkpoint.py)
        except Exception as e:
            failure = e
    # Every rank learns whether the save worked (not a barrier that waits forever if it did not),
    # and nobody runs ahead of a checkpoint that may be needed.
    if agree(failure is not None, rt):
        if failure is not None:
            raise failure
        raise ShardFormatError(f"rank 0 could not save the checkpoint of step {state.step} (its error says why); "
                               "stopping with it")
    return path


def vocab_of(data: RunData) -> Vocab:
    m = data.first.manifest
    return Vocab(size=m.vocab_size, bos_id=m.raw["tokenizer"].get("bos_id"), eos_id=m.eos_id)


def finished_run(ckpt: Checkpointer, *, plan: Plan, rt: Runtime, model, vocab: Vocab, state: TrainState,
                 say) -> Result:
    """--resume on a run at --max-steps: write final/ if a kill left it missing."""
    if ckpt.final_complete():  # the command says so before torch loads; this is for run() callers
        return Result(state.step, True, None, ckpt.final, None)
    say(f"the run finished at step {state.step} but {ckpt.final} is missing or incomplete: writing it now")
    final_dir, sample = release(ckpt, plan=plan, rt=rt, model=model, vocab=vocab, state=state, say=say)
    return Result(state.step, True, None, final_dir, sample)


def release(ckpt: Checkpointer, *, plan: Plan, rt: Runtime, model, vocab: Vocab, state: TrainState, say):
    """Write RUN/final (model + the dataset's tokenizer), then print a generated sample."""
    if not rt.main:
        return None, None
    cfg, data = plan.cfg, plan.data
    model = trimmed_for_release(model, vocab.size)

    def fill(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        for f in data.first.tokenizer_dir.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        info = {"fingerprints": data.fingerprints, "tokenizer_sha256": data.tokenizer_sha256, "step": state.step,
                "tokens_seen": state.tokens_seen, "config": cfg.to_json()}
        (tmp / "shardtrain.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    need = tensor_bytes(dict(model.state_dict())) + sum(f.stat().st_size for f in data.first.tokenizer_dir.iterdir()
                                                        if f.is_file())
    final = ckpt.write_final(fill, state.step, need)
    say(f"final model: {final} (AutoModelForCausalLM.from_pretrained / AutoTokenizer.from_pretrained)")
    sample = _sample(final, model, cfg, vocab, rt) if cfg.sample_tokens > 0 else None
    if sample is not None:
        say(f"sample: {sample}")
    return final, sample


@torch.no_grad()
def _sample(final: Path, model, cfg, vocab: Vocab, rt: Runtime) -> str:
    from shards.tokenizer_guard import load_tokenizer

    tok = load_tokenizer(final, str(final))
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


def evaluate_only(plan: Plan, rt: Runtime) -> Result:
    """--eval-only: the loss and perplexity of --init-from's weights on --valid; writes nothing."""
    cfg, data = plan.cfg, plan.data
    model = build_model(None, plan.init, vocab_of(data), dropout=0.0, pad_vocab_to=cfg.pad_vocab_to,
                        tokenizer_dir=data.valid.tokenizer_dir)
    model.to(rt.device)
    evalset = EvalSet(str(data.valid.path), plan.block_size, cfg.eval_blocks, rt)
    loss, ppl = evaluate(model, evalset, cfg.batch_size, rt)
    if rt.main:
        print(f"eval loss {loss:.4f} | ppl {ppl:.2f} | {plan.init.path} on {evalset.total} blocks of "
              f"{plan.block_size} tokens of {data.valid.path}", flush=True)
    return Result(0, True, loss, None, None)
