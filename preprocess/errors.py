"""Errors of the preprocess stage, typed so the CLI maps them to exit codes."""

from __future__ import annotations

from shards.errors import ShardFormatError, UsageError


class InputError(ShardFormatError):
    """An input file cannot be read or decoded as asked (bad data: exit 1)."""


class TokenizerError(UsageError):
    """The tokenizer asked for cannot be loaded, trained or used (bad usage: exit 2)."""


__all__ = ["InputError", "TokenizerError", "UsageError"]
