"""The `train` command. Its options are made from TrainConfig's fields (help, type, default)."""

from __future__ import annotations

from dataclasses import MISSING
from pathlib import Path

import click

from shards.console import cli_errors
from train.config import FIELDS


def _weights(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers like 0.7,0.3, got {value!r}") from None


def _shown_default(f) -> str:
    shown = f.metadata["shown"]
    if shown is None:
        shown = "" if f.default is MISSING or f.default is None else str(f.default)
    return f" [{shown}]" if shown else ""


def config_options(command):
    """Decorate `command` with one option per TrainConfig field. Every option defaults to None
    (not given), so the config file and the saved run config can fill what the flags leave out."""
    for f in reversed(list(FIELDS.values())):
        meta = f.metadata
        if not meta["cli"]:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = meta["help"] + _shown_default(f)
        kwargs = dict(help=help_text, default=None)
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        if f.name == "data":
            kwargs["multiple"] = True
        elif f.name == "weights":
            kwargs["callback"] = _weights
        elif isinstance(f.default, bool):
            if meta["negatable"]:
                flag = f"{flag}/--no-{f.name.replace('_', '-')}"
            else:
                kwargs["is_flag"] = True
        elif meta["type"] is not None:
            kwargs["type"] = meta["type"]
        command = click.option(flag, f.name, **kwargs)(command)
    return command


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_file", type=click.Path(path_type=Path), metavar="FILE.toml",
              help="Settings in TOML (the same names as the flags); flags override it.")
@config_options
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def main(config_file: Path | None, quiet: bool, **flags) -> None:
    """Train a Hugging Face GPT-2 on datasets made by `preprocess`, on CPU, a GPU or many.

    Writes RUN/config.json, RUN/metrics.jsonl, RUN/loss.png, checkpoints in RUN/checkpoints and, at
    the end, RUN/final (save_pretrained model + tokenizer). SIGTERM or Ctrl-C finishes the step,
    saves a checkpoint and exits 0; `--resume` continues exactly where it stopped, also with the
    datasets moved (--data DIR anew) or on another number of processes (same global batch).
    Several GPUs or machines: `torchrun --nproc-per-node G -m train ...`.

    \b
    Examples:
      train --data data/ds/train --valid data/ds/valid --out runs/tiny --max-steps 200 --warmup 20
      train --out runs/tiny --resume
      train --eval-only --init-from runs/tiny --valid data/ds/valid
    """
    flags["data"] = tuple(flags["data"])
    with cli_errors():
        from train.preflight import prepare  # no torch: every check that needs none comes first

        plan = prepare(config_file, flags)
        try:
            if plan.finished and plan.final_complete:
                if not quiet:
                    click.echo(f"the run in {plan.cfg.out} already finished at step {plan.resume.step} (final model: "
                               f"{plan.cfg.out}/final); to train further, start a new run from its weights: "
                               f"train --init-from {plan.cfg.out}/final --data ... --out NEW_RUN")
                return
            from train.loop import run  # lazy: torch and transformers load only now

            run(plan, quiet=quiet)
        finally:
            plan.release()
