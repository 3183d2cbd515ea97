"""The sharing subcommands of `shards`: export to and import from other tools' token files, merge parts.

They are registered on the `shards` group by `shards.cli`.
"""

from __future__ import annotations

from pathlib import Path

import click

from shards.console import DIR, Progress, cli_errors


@click.command()
@click.argument("directory", type=DIR)
@click.option("--format", "fmt", type=click.Choice(["llmc", "nanogpt"]), required=True,
              help="llmc: .bin files with llm.c's 256 x int32 header (llm.c, modded-nanogpt): magic 20240520 + "
                   "uint16 ids, or for vocabularies over 65,536 llm.c's Llama-3 variant, magic 20240801 + uint32 "
                   "ids; nanogpt: one raw uint16 .bin (nanoGPT's prepare.py).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory for the .bin files.")
@click.option("--name", default=None, help="File name stem [llmc: data -> data_000000.bin ..., nanogpt: train].")
@click.option("--tokens-per-file", type=click.IntRange(1, 2**31 - 1), metavar="N", default=None,
              help="llmc: cut files at the first document boundary at or past N tokens [one file per shard].")
def export(directory: Path, fmt: str, out: Path, name: str | None, tokens_per_file: int | None) -> None:
    """Write a dataset's token stream in the formats llm.c and nanoGPT read.

    llm.c's rule: its DataLoader asserts that EVERY file holds at least processes x B x T + 1
    tokens, i.e. more than processes x B x T (8 GPUs, B=64, T=1024: at least 524,289), and
    aborts otherwise. Files end at document boundaries, so the last one holds what is left and
    is usually the smallest; the summary prints the smallest file's size. Choose
    --tokens-per-file accordingly.

    Files are written under hidden temporary names and renamed when all are complete; the
    space needed is checked first. nanoGPT's format holds uint16 only: a dataset with a
    vocabulary over 65,536 exports with --format llmc (uint32) or not at all.
    """
    from shards.interop import export as run_export
    from shards.reader import Dataset

    with cli_errors():
        ds = Dataset(directory)
        with Progress(ds.num_tokens, " tok", label="export") as bar:
            done = run_export(ds, fmt, out, name or ("data" if fmt == "llmc" else "train"),
                              tokens_per_file=tokens_per_file, progress=bar.advance)
        line = f"wrote {len(done.files)} file(s), {sum(done.tokens):,} tokens, {done.layout}, to {out}"
        if fmt == "llmc":
            line += (f"; smallest file {min(done.tokens):,} tokens (llm.c needs every file to hold at least "
                     "processes x B x T + 1)")
        click.echo(line)


@click.command(name="import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--tokenizer", "tokenizer", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The tokenizer directory the ids belong to (AutoTokenizer-loadable, no custom code).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Dataset directory to create.")
@click.option("--format", "fmt", type=click.Choice(["auto", "llmc", "nanogpt"]), default="auto", show_default=True,
              help="auto: llm.c when the file starts with magic 20240520 (uint16) or 20240801 (Llama-3, uint32), "
                   "else raw uint16 (nanoGPT).")
@click.option("--eos-first", is_flag=True,
              help="The delimiter comes BEFORE each document, as llm.c's fineweb.py writes: documents begin at it. "
                   "Default: it ends each document (nanoGPT's prepare.py).")
@click.option("--shard-tokens", type=click.IntRange(min=1), default=100_000_000, show_default=True)
@click.option("--eos-token", metavar="TEXT",
              help="The delimiter token [the tokenizer's EOS; with --eos-first its BOS when the data starts with it].")
def import_(files: tuple[Path, ...], tokenizer: Path, out: Path, fmt: str, eos_first: bool, shard_tokens: int,
            eos_token: str | None) -> None:
    """Build a dataset directory from llm.c or nanoGPT .bin token files made elsewhere.

    Every file is checked first (llm.c magic, version and size; then every id against the
    tokenizer's vocabulary). The token stream is the files' tokens unchanged; the delimiter
    decides where documents begin: after it (default) or at it (--eos-first).
    """
    from shards.importing import import_tokens

    with cli_errors():
        with Progress(None, " tok", label="import") as bar:
            m = import_tokens(list(files), fmt, tokenizer, out, shard_tokens=shard_tokens, eos_token=eos_token,
                              eos_first=eos_first, progress=bar.advance,
                              say=lambda s: bar.above(lambda: click.echo(s, err=True)))
        click.echo(f"wrote {out}: {m.num_tokens:,} tokens, {m.num_documents:,} documents; fingerprint {m.fingerprint}")


@click.command()
@click.argument("parts", nargs=-1, required=True, type=DIR)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Dataset directory to create.")
def merge(parts: tuple[Path, ...], out: Path) -> None:
    """Join the parts of `preprocess --part K/N` runs (or datasets of one tokenizer) into one dataset.

    Shards are hard-linked, not copied, when the parts and --out share a filesystem (otherwise
    copied, after checking the space). The result has the same token stream and fingerprint as
    one run over all inputs.
    """
    from shards.merge import merge as run_merge

    with cli_errors():
        with Progress(None, " tok", label="merge") as bar:
            m, copied = run_merge(list(parts), out, progress=bar.advance)
        how = "hard-linked" if not copied else f"{copied} file(s) copied (different filesystems)"
        click.echo(f"wrote {out}: {len(m.shards)} shard(s) {how}, {m.num_tokens:,} tokens, "
                   f"{m.num_documents:,} documents; fingerprint {m.fingerprint}")
