"""The `preprocess` command."""

from __future__ import annotations

from pathlib import Path

import click

from shards.console import cli_errors


def _part(ctx, param, value):
    from preprocess.inputs import parse_part
    from shards.errors import UsageError

    try:
        return parse_part(value)
    except UsageError as e:
        raise click.BadParameter(str(e)) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Dataset directory to write (with --valid-fraction: DIR/train and DIR/valid).")
@click.option("--tokenizer", metavar="TOK",
              help="A tokenizer directory (AutoTokenizer), a SentencePiece .model file, or a hub name.")
@click.option("--vocab-size", type=click.IntRange(min=1), help="Train a new SentencePiece tokenizer of N tokens.")
@click.option("--tokenizer-type", type=click.Choice(["unigram", "bpe"]), default="unigram", show_default=True,
              help="SentencePiece algorithm for --vocab-size.")
@click.option("--character-coverage", type=click.FloatRange(0.98, 1.0), default=0.9995, show_default=True,
              help="Characters the trained vocabulary covers (the rest become bytes).")
@click.option("--sample-bytes", type=click.IntRange(min=1), default=100_000_000, show_default=True,
              help="Text bytes, spread over all inputs, that train the tokenizer.")
@click.option("--workers", "-w", type=click.IntRange(min=0), default=None,
              help="Tokenizer processes [default: all cores]; 0 encodes in this process. Never changes the output.")
@click.option("--shard-tokens", type=click.IntRange(min=1), default=100_000_000, show_default=True,
              help="Target tokens per shard (shards end at document boundaries).")
@click.option("--no-eos", is_flag=True, help="Join documents with nothing (the tutorial's token stream).")
@click.option("--eos-token", metavar="TEXT", help="Token appended after each document [default: the tokenizer's EOS].")
@click.option("--text-key", default="text", show_default=True, help="Field of each .jsonl object, or Parquet/Arrow column, holding the text.")
@click.option("--errors", type=click.Choice(["replace", "strict"]), default="replace", show_default=True,
              help="replace: invalid UTF-8 -> U+FFFD, bad JSON lines and null values skipped, all counted; "
                   "strict: stop at the first.")
@click.option("--valid-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0,
              help="Hold out this fraction of documents (by a hash of their text) in DIR/valid.")
@click.option("--max-doc-bytes", type=click.IntRange(min=1024), default=1 << 20, show_default=True,
              help="Longer documents are tokenized in pieces of at most this size (cut after a sentence end).")
@click.option("--part", callback=_part, metavar="K/N",
              help="Process only the K-th of N equal byte ranges of the inputs; join parts with `shards merge`.")
@click.option("--tokenizer-only", is_flag=True, help="Only train or import the tokenizer, into --out, and stop.")
@click.option("--overwrite", is_flag=True, help="Replace what --out holds instead of refusing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option("--checkpoint-seconds", type=click.FloatRange(min=0), default=10.0, hidden=True)
def main(inputs, out, tokenizer, vocab_size, tokenizer_type, character_coverage, sample_bytes, workers,
         shard_tokens, no_eos, eos_token, text_key, errors, valid_fraction, max_doc_bytes, part,
         tokenizer_only, overwrite, quiet, checkpoint_seconds) -> None:
    """Tokenize text once, in parallel worker processes, into a dataset of uint16/uint32 shards.

    INPUT is any number of files or directories (searched recursively): .txt with one document
    per line, .jsonl with the text under --text-key (both optionally compressed: .gz, .bz2, .xz,
    .zst), or .parquet / .arrow with the text in the --text-key column (a `datasets`
    save_to_disk directory too). The output is byte-identical whatever --workers is. Kill it at
    any moment and run the same command again: it resumes where it stopped.

    \b
    Examples:
      preprocess data/train.txt --vocab-size 8000 --out data/ds
      preprocess corpus/ --tokenizer data/ds/tokenizer --valid-fraction 0.01 --out data/big
    """
    from preprocess.config import PreprocessConfig, default_workers
    from preprocess.pipeline import report, run

    with cli_errors():
        cfg = PreprocessConfig(
            inputs=tuple(inputs), out=out, tokenizer=tokenizer, vocab_size=vocab_size,
            tokenizer_type=tokenizer_type, character_coverage=character_coverage, sample_bytes=sample_bytes,
            workers=default_workers() if workers is None else workers, shard_tokens=shard_tokens, no_eos=no_eos,
            eos_token=eos_token, text_key=text_key, errors=errors, valid_fraction=valid_fraction,
            max_doc_bytes=max_doc_bytes, part=part, overwrite=overwrite, quiet=quiet,
            tokenizer_only=tokenizer_only, checkpoint_seconds=checkpoint_seconds)
        try:
            summary = run(cfg, say=lambda s: click.echo(s, err=True))
        except KeyboardInterrupt:
            click.echo("error: interrupted; run the same command again to resume", err=True)
            raise SystemExit(130) from None
        if not quiet and not tokenizer_only:
            click.echo(report(summary, cfg))
