"""The progress bar: no absurd first rate, and after a resume a rate and ETA of this session only."""

from __future__ import annotations

import io

import pytest

from shards import console
from shards.console import Progress


@pytest.fixture
def bar_output(monkeypatch):
    """(what the bar wrote, its clock). Call it inside the test: pytest's own capture puts its
    sys.stderr back between a fixture's setup and the test."""
    def patch():
        err = io.StringIO()
        monkeypatch.setattr(console.sys, "stderr", err)
        clock = [100.0]
        monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
        return err, clock

    return patch


def _last_frame(err: io.StringIO) -> str:
    return err.getvalue().split("\r")[-1].strip()


def test_a_resumed_bar_counts_only_this_sessions_steps(bar_output):
    err, clock = bar_output()
    bar = Progress(1000, " steps", label="train", enabled=True, initial=137)  # resumed at step 137
    clock[0] += 10.0
    bar.advance(4)  # 4 steps in 10 s: 0.4 steps/s, 859 to go
    frame = _last_frame(err)
    assert "141 steps 0.4 steps/s" in frame and "ETA 35:47" in frame, frame  # 859 / 0.4 s


def test_no_rate_or_eta_in_the_first_second(bar_output):
    err, clock = bar_output()
    bar = Progress(10 << 30, "B", label="preprocess", enabled=True)
    clock[0] += 0.003
    bar.advance(1 << 20)  # the first megabyte comes from the page cache in 3 ms
    frame = _last_frame(err)
    assert "/s" not in frame and "ETA" not in frame, frame
    clock[0] += 2.0
    bar.advance(1 << 20)
    assert "ETA" in _last_frame(err)


def test_a_line_printed_above_the_bar_is_not_glued_to_it(bar_output):
    err, clock = bar_output()
    bar = Progress(10, " steps", enabled=True)
    clock[0] += 2.0
    bar.advance(1)
    width = len(_last_frame(err))
    bar.above(lambda: err.write("SIGINT: finishing this step\n"))
    text = err.getvalue()
    assert "\r" + " " * width + "\rSIGINT: finishing this step\n" in text  # the bar is wiped first


def test_a_narrow_terminal_keeps_the_eta(bar_output, monkeypatch):
    err, clock = bar_output()
    monkeypatch.setattr(console, "_columns", lambda: 64)
    bar = Progress(10 << 30, "B", label="preprocess", enabled=True)
    clock[0] += 10.0
    bar.advance(1 << 30, tok=300_000_000)
    frame = _last_frame(err)
    assert len(frame) < 64 and frame.endswith("ETA 1:30"), frame  # 9 GiB left at 0.1 GiB/s


def test_a_bar_used_as_a_context_manager_ends_its_line_on_an_error(bar_output):
    err, clock = bar_output()
    with pytest.raises(RuntimeError):
        with Progress(10, " tok", label="merge", enabled=True) as bar:
            clock[0] += 2.0
            bar.advance(3)
            raise RuntimeError("a part is corrupted")
    assert err.getvalue().startswith("\rmerge") and err.getvalue().endswith("\n")  # what follows starts a line
    with Progress(10, " tok", enabled=True) as bar:  # the old calls still work inside
        bar.advance(10)
        bar.close()
    assert err.getvalue().count("\n") == 2  # closed once, not again on leaving the block


# -- every command with a bar: on a terminal, its `error:` line is a line of its own ----------

def _tty_bars(monkeypatch) -> None:
    """The commands' bars drawn as on a terminal (CliRunner's stderr is not one)."""
    from shards import cli, sharing_cli

    class TtyProgress(Progress):
        def __init__(self, *args, enabled=None, **kwargs):
            super().__init__(*args, enabled=enabled is not False, **kwargs)

    for module in (cli, sharing_cli):
        monkeypatch.setattr(module, "Progress", TtyProgress)


def _fails_on_call(monkeypatch, target: str, n: int, error: BaseException) -> None:
    """`target` (module.attr or module.Class.attr) raises `error` at its n-th call, runs as usual before."""
    import importlib

    module_name, _, attr = target.rpartition(".")
    try:
        owner = importlib.import_module(module_name)
    except ModuleNotFoundError:
        mod, _, cls = module_name.rpartition(".")
        owner = getattr(importlib.import_module(mod), cls)
    real, calls = getattr(owner, attr), [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, attr, wrapper)


def _merge(make_dataset, tmp_path, monkeypatch):
    a = make_dataset([[5, 6, 2], [7, 2]] * 20, name="a")
    b = make_dataset([[8, 9, 10, 2]] * 20, name="b")
    victim = b / "shard_00000.npy"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01
    victim.write_bytes(bytes(data))
    return ["merge", a, b, "--out", tmp_path / "m"]


def _import(make_dataset, tmp_path, monkeypatch, tokenizer_dir):
    import numpy as np

    (tmp_path / "a.bin").write_bytes(np.array([5, 6, 2, 7, 2] * 10, dtype="<u2").tobytes())
    (tmp_path / "b.bin").write_bytes(np.array([5, 60_000, 2], dtype="<u2").tobytes())  # outside the vocabulary
    return ["import", tmp_path / "a.bin", tmp_path / "b.bin", "--tokenizer", tokenizer_dir, "--out", tmp_path / "i"]


def _export(make_dataset, tmp_path, monkeypatch):
    import errno

    ds = make_dataset([[5, 6, 7, 2]] * 30, shard_tokens=20)
    _fails_on_call(monkeypatch, "shards.reader.Dataset.read", 3, OSError(errno.EIO, "Input/output error"))
    return ["export", ds, "--format", "llmc", "--out", tmp_path / "bins"]


def _verify(make_dataset, tmp_path, monkeypatch, flag=None):
    ds = make_dataset([[5, 6, 7, 2]] * 30, shard_tokens=20)
    if flag:
        _fails_on_call(monkeypatch, "shards.roundtrip._Checker.batch", 3, KeyboardInterrupt())
        return ["verify", ds, flag]
    _fails_on_call(monkeypatch, "shards.verify._check_index", 3, KeyboardInterrupt())  # Ctrl-C at shard 2
    return ["verify", ds]


@pytest.mark.parametrize("command", ["merge", "import", "export", "verify", "verify --tokenizer-roundtrip"])
def test_the_error_line_is_not_glued_to_the_bar(command, make_dataset, tokenizer_dir, tmp_path, monkeypatch):
    import re

    from tests.helpers import shards_cli

    _tty_bars(monkeypatch)
    if command == "merge":
        args = _merge(make_dataset, tmp_path, monkeypatch)
    elif command == "import":
        args = _import(make_dataset, tmp_path, monkeypatch, tokenizer_dir)
    elif command == "export":
        args = _export(make_dataset, tmp_path, monkeypatch)
    else:
        args = _verify(make_dataset, tmp_path, monkeypatch, *command.split()[1:])
    r = shards_cli(*args)
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    err = r.stderr
    assert err.startswith("\r") and "error: " in err, repr(err)  # the bar was drawn, then the error came
    assert not re.search(r"[^\n]error: ", err), repr(err)
    assert err.endswith("\n")
