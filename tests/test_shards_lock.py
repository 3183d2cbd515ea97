"""shards.lock: the refusal names the holder's whole command, which may be several words."""

from __future__ import annotations

import os

import pytest

from shards.lock import DirectoryBusyError, DirectoryLock


@pytest.mark.parametrize("command", ["shards merge", "train", "preprocess --part 0/2"])
def test_the_refusal_names_the_holders_command(tmp_path, command):
    with DirectoryLock(tmp_path, command):
        with pytest.raises(DirectoryBusyError) as e:
            DirectoryLock(tmp_path, "shards import").acquire()
    assert f"another {command} (pid {os.getpid()}) is writing here right now" in str(e.value)
