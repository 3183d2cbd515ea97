"""RUN/loss.png: a title, a learning-rate panel, readable at 10 and at 100,000 steps, redrawn
atomically at each evaluation of a run."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from shards.console import human  # noqa: E402
from tests.conftest import train_args  # noqa: E402
from tests.train_helpers import train_cli  # noqa: E402
from train.plot import draw, figure  # noqa: E402
from train.schedule import lr_at  # noqa: E402


def _records(steps: int, every: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for s in range(1, steps + 1):
        out.append({"step": s, "loss": 9.0 * math.exp(-s / (steps / 5)) + 2.0 + rng.normal(0, 0.3),
                    "lr": lr_at(s - 1, lr=6e-4, warmup=max(1, steps // 100), max_steps=steps, min_lr_ratio=0.1)})
        if s % every == 0:
            out.append({"step": s, "eval_loss": 9.0 * math.exp(-s / (steps / 5)) + 2.2, "eval_ppl": 1.0})
    return out


@pytest.mark.parametrize("steps, every", [(10, 5), (100_000, 2_000)])
def test_the_plot_has_a_title_two_panels_and_draws_at_any_length(tmp_path, steps, every):
    import matplotlib.image
    import matplotlib.pyplot as plt

    records = _records(steps, every)
    fig = figure(records, "run: gpt2-mini, 5.3M parameters\nstep 10 of 10, 20.5k tokens")
    loss_ax, lr_ax = fig.axes
    assert loss_ax.get_title().startswith("run: gpt2-mini") and lr_ax.get_ylabel() == "learning rate"
    labels = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert "eval loss" in labels
    # Long runs: the raw loss faint, a moving average on top; short ones: the points themselves.
    assert ("train loss (moving average)" in labels) == (steps > 200)
    lr_line = lr_ax.get_lines()[0]
    assert len(lr_line.get_xdata()) == steps and max(lr_line.get_ydata()) == pytest.approx(6e-4)
    plt.close(fig)
    out = draw(records, tmp_path / "loss.png", "run")
    png = matplotlib.image.imread(out)
    assert png.shape[:2] == (605, 880)  # 8 x 5.5 inches at 110 dpi
    assert png[..., :3].std() > 0.05  # not a blank canvas
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]  # the temp file is gone


def test_a_run_redraws_its_plot_at_each_evaluation(train_valid, tmp_path, monkeypatch):
    import train.metrics

    drawn = []
    real = train.metrics.Metrics.redraw

    def spy(self, subtitle=""):
        out = real(self, subtitle)
        drawn.append((subtitle, out.read_bytes()[:8] if out else None))
        return out

    monkeypatch.setattr(train.metrics.Metrics, "redraw", spy)
    run = tmp_path / "run"
    r = train_cli(*train_args(train_valid, run), "--max-steps", "6", "--eval-every", "2")
    assert r.exit_code == 0, r.output
    subtitles = [s for s, _ in drawn]
    assert subtitles[:3] == [f"step {s} of 6, {human(s * 4 * 32)} tokens" for s in (2, 4, 6)]
    assert all(head == b"\x89PNG\r\n\x1a\n" for _, head in drawn)
    assert (run / "loss.png").is_file() and not list(run.glob(".loss.png*"))
