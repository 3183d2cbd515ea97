"""lr_at(step): warmup, cosine, floor, as properties over every schedule; refusals as one line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from shards.errors import UsageError
from train.config import TrainConfig
from train.schedule import lr_at


@st.composite
def schedules(draw):
    max_steps = draw(st.integers(1, 3000))
    warmup = draw(st.integers(0, max_steps - 1))
    lr = draw(st.floats(1e-6, 1.0))
    ratio = draw(st.floats(0.0, 1.0))
    return {"lr": lr, "warmup": warmup, "max_steps": max_steps, "min_lr_ratio": ratio}


@settings(max_examples=150, deadline=None)
@given(schedules())
def test_warmup_rises_to_the_peak_then_cosine_falls_to_the_floor(s):
    lrs = [lr_at(i, **s) for i in range(s["max_steps"] + 3)]
    peak, floor, w, n = s["lr"], s["lr"] * s["min_lr_ratio"], s["warmup"], s["max_steps"]
    eps = 1e-12 * max(peak, 1e-300)
    assert all(0 <= x <= peak + eps for x in lrs)
    assert all(a < b + eps for a, b in zip(lrs[:w], lrs[1:w]))  # warmup strictly rises ...
    if w:
        assert lrs[w - 1] == pytest.approx(peak)  # ... to the peak at its last step
        assert lrs[0] == pytest.approx(peak / w)
    decay = lrs[w:n]
    assert all(b <= a + eps for a, b in zip(decay, decay[1:]))  # the cosine never rises
    if n - 1 > w:
        assert lrs[w] == pytest.approx(peak)
    assert lrs[n - 1] == pytest.approx(floor)  # the last step is at the floor ...
    assert all(x == pytest.approx(floor) for x in lrs[n:])  # ... and so is everything past it


@settings(max_examples=100, deadline=None)
@given(schedules())
def test_no_step_to_step_change_exceeds_the_schedules_own_largest(s):
    """The bound a resume must respect: what the schedule itself does from one step to the next.
    Warmup steps by peak/warmup; the cosine's steepest step is below pi/2 * (peak-floor)/span."""
    n, w, peak = s["max_steps"], s["warmup"], s["lr"]
    steps = [abs(lr_at(i + 1, **s) - lr_at(i, **s)) for i in range(n - 1)]
    span = n - 1 - w
    bound = max(peak / w if w else 0.0, 3.1416 / 2 * peak / span if span > 0 else peak)
    assert all(d <= bound * (1 + 1e-9) + 1e-15 for d in steps)


@pytest.mark.parametrize("warmup, max_steps", [(10, 10), (11, 10), (1, 1)])
def test_warmup_not_below_max_steps_is_refused(warmup, max_steps):
    with pytest.raises(ValueError):
        lr_at(0, lr=1.0, warmup=warmup, max_steps=max_steps, min_lr_ratio=0.1)
    with pytest.raises(UsageError, match=f"--warmup {warmup} must be below --max-steps {max_steps}"):
        TrainConfig(data=("d",), out="r", warmup=warmup, max_steps=max_steps)


def test_warmup_refusal_is_one_line_from_the_command(tmp_path):
    from train.cli import main

    r = CliRunner().invoke(main, ["--data", str(tmp_path), "--out", str(tmp_path / "r"), "--max-steps", "50"])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        "error: --warmup 100 must be below --max-steps 50: the run would never reach its peak learning rate or "
        "its floor; lower --warmup or raise --max-steps"]
    assert not (tmp_path / "r").exists()
