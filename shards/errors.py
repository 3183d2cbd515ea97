"""Typed errors of the shard format, so the CLIs can turn them into one line and an exit code."""

from __future__ import annotations


class ShardFormatError(ValueError):
    """The bytes on disk do not match the dataset contract (bad data: CLI exit 1)."""


class IncompleteDatasetError(ShardFormatError):
    """A dataset directory without manifest.json: a writer never finished."""


class UsageError(ValueError):
    """A setting the user chose cannot work (bad usage: CLI exit 2)."""
