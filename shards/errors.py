"""Typed errors of the shard format, so the CLIs can turn them into one line and an exit code."""

from __future__ import annotations

import errno as _errno


class ShardFormatError(ValueError):
    """The bytes on disk do not match the dataset contract (bad data: CLI exit 1)."""


class IncompleteDatasetError(ShardFormatError):
    """A dataset directory without manifest.json: a writer never finished."""


class UsageError(ValueError):
    """A setting the user chose cannot work (bad usage: CLI exit 2)."""


class NoSpaceError(ShardFormatError):
    """The filesystem is full (ENOSPC), or too full for a write whose size is known in advance.

    Its message names the path and, where known, the space needed and free. It derives from
    ShardFormatError for its exit code (1) in `shards.console.cli_errors`, which prints the
    message as it is. `errno` is ENOSPC, as on the OSError it usually replaces.
    """

    errno = _errno.ENOSPC
