"""The `train` command."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shards.console import cli_errors

_PRESETS = "gpt2-tiny, gpt2-mini, gpt2-small (124M), gpt2-medium, gpt2-large, gpt2-xl"


def _weights(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers like 0.7,0.3, got {value!r}") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data", "data", multiple=True, metavar="DIR",
              help="Dataset directory from `preprocess` (repeat to mix several, see --weights).")
@click.option("--out", metavar="RUN", help="Run directory: config, metrics, checkpoints, final/ model.")
@click.option("--valid", metavar="DIR", help="Validation dataset (same tokenizer) for evaluation.")
@click.option("--weights", callback=_weights, metavar="W1,W2,...", help="Mixing proportions of the --data datasets.")
@click.option("--model", metavar="PRESET|JSON", help=f"A preset ({_PRESETS}) or a GPT2Config JSON file [gpt2-tiny].")
@click.option("--init-from", metavar="HF_DIR", help="Continue training a Hugging Face GPT-2 model directory.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), metavar="FILE.toml",
              help="Settings in TOML (same names as the flags); flags override it.")
@click.option("--block-size", type=click.IntRange(min=1), help="Tokens per sequence [the model's context].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Sequences per micro-batch per process [8].")
@click.option("--grad-accum", type=click.IntRange(min=1), help="Micro-batches per optimizer step [1].")
@click.option("--max-steps", type=click.IntRange(min=1), help="Optimizer steps in the whole run [1000].")
@click.option("--stop-at", type=click.IntRange(min=1), help="Stop cleanly after this step (resume later).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate [6e-4].")
@click.option("--min-lr-ratio", type=click.FloatRange(0, 1), help="Cosine floor as a fraction of --lr [0.1].")
@click.option("--warmup", type=click.IntRange(min=0), help="Linear warmup steps [100].")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="AdamW weight decay [0.1].")
@click.option("--grad-clip", type=click.FloatRange(min=0), help="Max gradient norm, 0 = off [1.0].")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), help="Dropout [0].")
@click.option("--eval-every", type=click.IntRange(min=1), help="Evaluate every N steps [200].")
@click.option("--eval-blocks", type=click.IntRange(min=1), help="Validation blocks evaluated each time [200].")
@click.option("--log-every", type=click.IntRange(min=1), help="Log every N steps [10].")
@click.option("--checkpoint-every", type=click.IntRange(min=1), help="Checkpoint every N steps [500].")
@click.option("--keep", type=click.IntRange(min=2), help="Complete checkpoints to keep [3].")
@click.option("--seed", type=int, help="Seed of the model init and the data order [1337].")
@click.option("--workers", type=click.IntRange(min=0), help="DataLoader workers per process [2].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="[auto]")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp16", "fp32"]),
              help="[auto: bf16 on GPUs that have it, else fp16; fp32 on CPU]")
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the model [off].")
@click.option("--sample-tokens", type=click.IntRange(min=0), help="Tokens of the sample printed at the end [60].")
@click.option("--sample-prompt", help="Prompt of that sample [a document start].")
@click.option("--resume", is_flag=True, default=None, help="Continue from the newest complete checkpoint in RUN.")
@click.option("--allow-data-change", is_flag=True, default=None,
              help="Resume even if the datasets' fingerprints differ from the checkpoint's.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def main(data, out, valid, weights, model, init_from, config_file, block_size, batch_size, grad_accum, max_steps,
         stop_at, lr, min_lr_ratio, warmup, weight_decay, grad_clip, dropout, eval_every, eval_blocks, log_every,
         checkpoint_every, keep, seed, workers, device, precision, compile_, sample_tokens, sample_prompt, resume,
         allow_data_change, quiet) -> None:
    """Train a Hugging Face GPT-2 on datasets made by `preprocess`, on CPU, a GPU or many.

    Writes RUN/config.json, RUN/metrics.jsonl, checkpoints in RUN/checkpoints and, at the end,
    RUN/final (save_pretrained model + tokenizer). SIGTERM or Ctrl-C finishes the step, saves a
    checkpoint and exits 0; `--resume` continues exactly where it stopped. Several GPUs or
    machines: `torchrun --nproc-per-node G -m train ...`.

    \b
    Example:
      train --data data/ds/train --valid data/ds/valid --out runs/tiny --model gpt2-tiny --max-steps 200
    """
    flags = dict(data=tuple(data), out=out, valid=valid, weights=weights, model=model, init_from=init_from,
                 block_size=block_size, batch_size=batch_size, grad_accum=grad_accum, max_steps=max_steps,
                 stop_at=stop_at, lr=lr, min_lr_ratio=min_lr_ratio, warmup=warmup, weight_decay=weight_decay,
                 grad_clip=grad_clip, dropout=dropout, eval_every=eval_every, eval_blocks=eval_blocks,
                 log_every=log_every, checkpoint_every=checkpoint_every, keep=keep, seed=seed, workers=workers,
                 device=device, precision=precision, compile=compile_, sample_tokens=sample_tokens,
                 sample_prompt=sample_prompt, resume=resume, allow_data_change=allow_data_change)
    with cli_errors():
        cfg = build_config(config_file, flags)
        from train.loop import run  # lazy: torch and transformers load only now

        run(cfg, quiet=quiet)


def build_config(config_file: Path | None, flags: dict):
    """Defaults < the run's saved config (on --resume) < the TOML file < the flags given."""
    from shards.errors import UsageError
    from train.config import DATA_ORDER, PER_INVOCATION, load_toml, normalize, resolve

    settings = load_toml(config_file) if config_file else {}
    out = flags.get("out") or settings.get("out")
    resume = flags.get("resume") or settings.get("resume")
    saved_path = Path(out) / "config.json" if out else None
    if resume and saved_path is not None and saved_path.is_file():
        try:
            saved = json.loads(saved_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{saved_path}: not valid JSON ({e}); the run's settings are lost: start a new "
                             "--out, or restore config.json from a checkpoint's meta.json") from None
        saved = normalize(saved, str(saved_path))
        saved = {k: v for k, v in saved.items() if k not in PER_INVOCATION}
        cfg = resolve({**saved, **settings}, flags)
        before = resolve(saved, {})
        changed = [k for k in DATA_ORDER if getattr(cfg, k) != getattr(before, k)]
        if changed:
            raise UsageError(f"--resume: {', '.join(changed)} differ from the run's saved config; they decide "
                             "which data each step sees. Start a new --out to change them")
        return cfg
    return resolve(settings, flags)
