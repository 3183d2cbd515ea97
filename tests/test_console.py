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
