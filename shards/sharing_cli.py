"""The sharing subcommands of `shards`: export to and import from other tools' token files, merge parts.

They are registered on the `shards` group by `shards.cli`.
"""

from __future__ import annotations

from pathlib import Path

import click

from shards.console import Progress, cli_errors

DIR = click.Path(path_type=Path, file_okay=True, dir_okay=True)


@click.command()
@click.argument("directory", type=DIR)
@click.option("--format", "fmt", type=click.Choice(["llmc", "nanogpt"]), required=True,
              help="llmc: one .bin per shard, 256 x int32 header + uint16 tokens (llm.c, modded-nanogpt); "
                   "nanogpt: one raw uint16 .bin (nanoGPT's prepare.py).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory for the .bin files.")
@click.option("--name", default=None, help="File name stem [llmc: data, nanogpt: train].")
def export(directory: Path, fmt: str, out: Path, name: str | None) -> None:
    """Write a dataset's token stream in the formats llm.c and nanoGPT read.

    Only uint16 datasets (vocabulary <= 65,536) can be exported; others are refused rather
    than truncated.
    """
    from shards.interop import export as run_export
    from shards.reader import Dataset

    with cli_errors():
        ds = Dataset(directory)
        bar = Progress(ds.num_tokens, " tok", label="export")
        files = run_export(ds, fmt, out, name or ("data" if fmt == "llmc" else "train"), progress=bar.advance)
        bar.close()
        click.echo(f"wrote {len(files)} file(s), {ds.num_tokens:,} tokens, to {out}")


@click.command(name="import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--tokenizer", "tokenizer", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The tokenizer directory the ids belong to (AutoTokenizer-loadable).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Dataset directory to create.")
@click.option("--format", "fmt", type=click.Choice(["auto", "llmc", "nanogpt"]), default="auto", show_default=True,
              help="auto: llm.c when the file starts with its magic 20240520, else raw uint16.")
@click.option("--shard-tokens", type=click.IntRange(min=1), default=100_000_000, show_default=True)
@click.option("--eos-token", metavar="TEXT", help="The token that ends documents [the tokenizer's EOS].")
def import_(files: tuple[Path, ...], tokenizer: Path, out: Path, fmt: str, shard_tokens: int,
            eos_token: str | None) -> None:
    """Build a dataset directory from llm.c or nanoGPT .bin token files made elsewhere.

    Headers are checked (magic, version, size). Each EOS ends a document.
    """
    from shards.interop import import_tokens

    with cli_errors():
        bar = Progress(None, " tok", label="import")
        m = import_tokens(list(files), fmt, tokenizer, out, shard_tokens=shard_tokens, eos_token=eos_token,
                          progress=bar.advance)
        bar.close()
        click.echo(f"wrote {out}: {m.num_tokens:,} tokens, {m.num_documents:,} documents; fingerprint {m.fingerprint}")


@click.command()
@click.argument("parts", nargs=-1, required=True, type=DIR)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Dataset directory to create.")
def merge(parts: tuple[Path, ...], out: Path) -> None:
    """Join the parts of `preprocess --part K/N` runs (or datasets of one tokenizer) into one dataset.

    Shards are hard-linked, not copied, when the parts and --out share a filesystem. The result
    has the same token stream and fingerprint as one run over all inputs.
    """
    from shards.merge import merge as run_merge

    with cli_errors():
        bar = Progress(None, " tok", label="merge")
        m, copied = run_merge(list(parts), out, progress=bar.advance)
        bar.close()
        how = "hard-linked" if not copied else f"{copied} file(s) copied (different filesystems)"
        click.echo(f"wrote {out}: {len(m.shards)} shard(s) {how}, {m.num_tokens:,} tokens, "
                   f"{m.num_documents:,} documents; fingerprint {m.fingerprint}")
