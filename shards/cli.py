"""The `shards` command: look into, check and decode dataset directories (sharing commands: sharing_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shards.console import DIR, Progress, cli_errors, human
from shards.errors import ShardFormatError, UsageError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shardtrain", prog_name="shards")
def main() -> None:
    """Inspect, verify and share tokenized dataset directories made by `preprocess`.

    A dataset directory holds manifest.json (written last: without it the dataset is
    incomplete), .npy token shards, a document index per shard and the tokenizer.
    """


@main.command()
@click.argument("directory", type=DIR)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest facts as JSON.")
def info(directory: Path, as_json: bool) -> None:
    """Summarize a dataset: fingerprint, tokens, documents, shards, dtype, tokenizer, settings.

    Two teams hold the same data and tokenizer exactly when their fingerprints are equal.
    Reads the manifest and checks the files' sizes and headers, no token data: instant on any
    size. `shards verify` checks every byte.
    """
    from shards.reader import Dataset

    with cli_errors():
        ds = Dataset(directory)
        m = ds.manifest.raw
        if as_json:
            click.echo(json.dumps(m, indent=2, ensure_ascii=False))
            return
        tok = m["tokenizer"]
        stats = m.get("stats") or {}
        lines = [
            f"fingerprint   {m['fingerprint']}",
            f"dataset       {directory}",
            f"tokens        {m['num_tokens']:,} ({human(m['num_tokens'])})",
            f"documents     {m['num_documents']:,}",
            f"shards        {len(m['shards'])} ({m['dtype']}, {human(sum(s['bytes'] for s in m['shards']), 'B')})",
            f"vocab size    {m['vocab_size']:,}",
            f"eos           {m.get('eos_id')} ({_eos_place(m)})",
            f"tokenizer     {tok.get('kind')}; source: {tok.get('source')}; sha256 {tok['sha256'][:16]}...",
            f"source bytes  {m.get('source_bytes', 0):,}",
        ]
        if m.get("source_bytes") and m["num_tokens"]:
            lines.append(f"bytes/token   {m['source_bytes'] / m['num_tokens']:.2f}")
        if stats:
            lines.append("stats         " + ", ".join(f"{k}={v}" for k, v in stats.items() if not isinstance(v, dict)))
        settings = m.get("settings") or {}
        if settings:
            lines.append("settings      " + ", ".join(f"{k}={v}" for k, v in settings.items()))
        tool = m.get("tool") or {}  # optional keys: a manifest that passed validation must not crash info
        lines.append(f"written by    {tool.get('name', '?')} {tool.get('version', '?')} "
                     f"(format {m['format']} v{m['format_version']})")
        click.echo("\n".join(lines))


def _eos_place(m: dict) -> str:
    if (m.get("settings") or {}).get("eos_first"):
        return "before every document (imported with --eos-first)"
    return "after every document" if m.get("eos_separates_documents") else "not added"


@main.command()
@click.argument("directory", type=DIR)
@click.option("--tokenizer-roundtrip", "roundtrip", is_flag=True,
              help="Also decode every document with the dataset's tokenizer and re-encode the text "
                   "(AutoTokenizer, add_special_tokens=False); report each document whose ids differ.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing when the dataset is intact.")
def verify(directory: Path, roundtrip: bool, quiet: bool) -> None:
    """Re-hash every shard and check ids, document index, tokenizer and fingerprint.

    Exit 0 when all holds; exit 1 with one line per problem otherwise. Run it on a dataset you
    received before training on it. Names in the manifest must stay inside DIR (no absolute
    paths, no `..`, no symlink leading out) and the tokenizer must load without running code.

    --tokenizer-roundtrip checks the tokenizer guarantee too (slower: it decodes and encodes
    every document): the ids of each document equal what DIR/tokenizer gives its text.
    Documents preprocess split by --max-doc-bytes, and those holding <unk> or non-UTF-8 bytes,
    are counted apart as notes, not errors.
    """
    from shards.manifest import load_manifest
    from shards.verify import verify as run_verify

    with cli_errors():
        m = load_manifest(directory)
        with Progress(m.num_tokens, " tok", label="verify", enabled=None if not quiet else False) as bar:
            problems = run_verify(directory, progress=bar.advance, manifest=m)
        if problems:
            for p in problems:
                click.echo(f"error: {p}", err=True)
            tail = "; tokenizer roundtrip not run" if roundtrip else ""
            click.echo(f"{directory}: {len(problems)} problem(s) found{tail}", err=True)
            raise SystemExit(1)
        extra = _roundtrip(directory, m, quiet) if roundtrip else ""
        if not quiet:
            click.echo(f"ok: {directory}: {len(m.shards)} shard(s), {m.num_tokens:,} tokens, "
                       f"{m.num_documents:,} documents; fingerprint {m.fingerprint}{extra}")


def _roundtrip(directory: Path, m, quiet: bool) -> str:
    """Run the tokenizer round trip; exit 1 when a document differs, else the ok line's addition."""
    from shards.roundtrip import roundtrip, summary

    with Progress(m.num_tokens, " tok", label="roundtrip", enabled=None if not quiet else False) as bar:
        report = roundtrip(directory, progress=bar.advance, manifest=m)
    for line in summary(directory, report, directory / m.tokenizer_dir):
        if report.differ or not quiet:
            click.echo(line, err=True)
    if report.differ:
        raise SystemExit(1)
    return f"; every document re-encodes to its ids ({report.documents - report.split - report.lossy:,} checked)"


def _token_range(text: str) -> tuple[int, int]:
    try:
        a, b = text.split(":")
        return int(a), int(b)
    except ValueError:
        raise UsageError(f"--tokens: expected A:B (two integers), got {text!r}") from None


@main.command()
@click.argument("directory", type=DIR)
@click.option("--doc", "doc", type=int, metavar="N", help="Print document N (ids and text).")
@click.option("--tokens", "token_range", metavar="A:B", help="Print tokens [A, B) of the stream.")
@click.option("--ids/--no-ids", default=True, show_default=True, help="Also print the token ids.")
def inspect(directory: Path, doc: int | None, token_range: str | None, ids: bool) -> None:
    """Decode part of a dataset with its own tokenizer: a document or a token range."""
    from shards.reader import Dataset

    # Checked inside cli_errors, so a usage mistake is one `error:` line (exit 2) like any other.
    with cli_errors():
        if (doc is None) == (token_range is None):
            raise UsageError("give exactly one of --doc N or --tokens A:B")
        span = _token_range(token_range) if token_range is not None else None
        ds = Dataset(directory)
        if doc is not None:
            if not 0 <= doc < ds.num_documents:
                raise UsageError(f"--doc {doc}: the dataset has {ds.num_documents} documents (0..{ds.num_documents - 1})")
            a, b = ds.document_span(doc)
            header = f"document {doc}: tokens [{a}, {b}) ({b - a} tokens)"
        else:
            a, b = span
            if not 0 <= a < b <= ds.num_tokens:
                raise UsageError(f"--tokens {a}:{b}: need 0 <= A < B <= {ds.num_tokens}")
            header = f"tokens [{a}, {b})"
        arr = ds.read(a, b).tolist()
        from shards.tokenizer_guard import load_tokenizer  # lazy: only decoding needs transformers

        if not ds.tokenizer_dir.is_dir():
            raise ShardFormatError(f"{ds.tokenizer_dir}: the dataset's tokenizer is missing; re-copy the dataset")
        tok = load_tokenizer(ds.tokenizer_dir, str(ds.tokenizer_dir))
        click.echo(header)
        if ids:
            click.echo(f"ids: {arr}")
        click.echo(tok.decode(arr))


def _register_sharing_commands() -> None:
    from shards.sharing_cli import export, import_, merge

    for command in (export, import_, merge):
        main.add_command(command)


_register_sharing_commands()
