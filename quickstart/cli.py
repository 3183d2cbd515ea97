"""The `quickstart` command: the whole system on the bundled Japanese corpus, in minutes on a CPU.

It runs the same commands a user would type (and prints them), so the tour doubles as a
template: preprocess trains a tokenizer and writes shards, shards verify checks them, train
fits a small GPT-2 and prints a sample.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click

from quickstart import CORPUS


def _run(step: str, args: list[str]) -> None:
    shown = " ".join(shlex.quote(a) for a in args)
    click.secho(f"\n== {step}\n$ {shown}", bold=True)
    module = args[0]
    code = subprocess.call([sys.executable, "-m", module, *args[1:]])
    if code != 0:
        raise click.ClickException(f"`{shown}` failed with exit code {code}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(path_type=Path), default=Path("quickstart-output"), show_default=True,
              help="Where the datasets and the run go.")
@click.option("--steps", type=click.IntRange(min=1), default=400, show_default=True, help="Training steps.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Start over if --out exists.")
def main(out: Path, steps: int, device: str, overwrite: bool) -> None:
    """Tokenize the bundled corpus, train a small GPT-2 on it, and show what came out.

    The corpus is LibreOffice's Japanese help (MPL-2.0; see quickstart/data). About 3 minutes
    on a 2-core CPU.
    """
    t0 = time.monotonic()
    data, run = out / "data", out / "run"
    if data.exists() or run.exists():
        if not overwrite:
            raise click.UsageError(f"{out} holds an earlier quickstart; pass --overwrite to start over, or --out elsewhere")
        import shutil

        for d in (data, run):  # only what quickstart wrote: never the rest of --out
            shutil.rmtree(d, ignore_errors=True)
    train_txt, valid_txt = CORPUS / "train.txt", CORPUS / "valid.txt"
    _run("1. tokenize the training text: train an 8k SentencePiece tokenizer, write shards (all cores)",
         ["preprocess", str(train_txt), "--vocab-size", "8000", "--out", str(data / "train")])
    _run("2. tokenize the validation text with the same tokenizer",
         ["preprocess", str(valid_txt), "--tokenizer", str(data / "train" / "tokenizer"), "--out", str(data / "valid")])
    _run("3. check the dataset as a receiving team would", ["shards", "verify", str(data / "train")])
    _run("4. train a 5M-parameter GPT-2 (gpt2-mini) from the shards, evaluating on the validation set",
         ["train", "--data", str(data / "train"), "--valid", str(data / "valid"), "--out", str(run),
          "--model", "gpt2-mini", "--block-size", "128", "--batch-size", "16", "--max-steps", str(steps),
          "--warmup", str(max(1, steps // 10)), "--lr", "1e-3", "--eval-every", str(max(1, steps // 4)),
          "--log-every", str(max(1, steps // 20)), "--checkpoint-every", str(max(1, steps // 2)),
          "--workers", "1", "--device", device, "--sample-tokens", "80", "--sample-prompt", "ダイアログ"])
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
             if "eval_ppl" in line]
    click.secho("\n== done", bold=True)
    if evals:
        click.echo(f"validation perplexity: {evals[0]['eval_ppl']:,.1f} at step 0 -> "
                   f"{evals[-1]['eval_ppl']:,.1f} at step {evals[-1]['step']}")
    click.echo(f"datasets:      {data / 'train'}  {data / 'valid'}   (shards info DIR)")
    click.echo(f"run:           {run}   (config.json, metrics.jsonl, checkpoints/)")
    click.echo(f"model:         {run / 'final'}   (AutoModelForCausalLM.from_pretrained)")
    click.echo(f"time:          {time.monotonic() - t0:.0f} s")
