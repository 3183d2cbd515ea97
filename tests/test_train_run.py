"""`train` end to end on a CPU: exact resume, the released model, refusals before training."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from tests.conftest import train_args
from train.cli import main as train
from train.metrics import read


def _train(*args: str):
    result = CliRunner().invoke(train, list(args))
    return result


def _losses(run) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read(run / "metrics.jsonl") if "loss" in r}


def test_resume_gives_bit_identical_losses(train_valid, tmp_path):
    """12 steps straight == 6 steps, stop, --resume, 6 more (DataLoader workers included)."""
    common = ["--max-steps", "12", "--workers", "2", "--checkpoint-every", "4"]
    straight = _train(*train_args(train_valid, tmp_path / "a"), *common)
    assert straight.exit_code == 0, straight.output
    first = _train(*train_args(train_valid, tmp_path / "b"), *common, "--stop-at", "6")
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step_00000004", "step_00000006"]
    assert not (tmp_path / "b" / "final").exists()
    second = _train("--out", str(tmp_path / "b"), "--resume", "-q")
    assert second.exit_code == 0, second.output
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert list(a) == list(range(1, 13))
    assert a == b  # float equality: bit for bit
    evals = lambda run: [(r["step"], r["eval_loss"]) for r in read(run / "metrics.jsonl") if "eval_loss" in r]
    assert evals(tmp_path / "a") == evals(tmp_path / "b")


def test_released_model_loads_with_transformers(train_valid, tmp_path):
    run = tmp_path / "run"
    result = _train(*train_args(train_valid, run), "--max-steps", "10")
    assert result.exit_code == 0, result.output
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    model = AutoModelForCausalLM.from_pretrained(run / "final")
    tok = AutoTokenizer.from_pretrained(run / "final")
    assert model.config.vocab_size == len(tok) == 1000
    text = pipeline("text-generation", model=str(run / "final"))("ダイアログ", max_new_tokens=5, do_sample=False)
    assert text[0]["generated_text"].startswith("ダイアログ")
    info = json.loads((run / "final" / "shardtrain.json").read_text())
    manifest = json.loads((train_valid / "train" / "manifest.json").read_text())
    assert info["fingerprints"]["data"] == [manifest["fingerprint"]]
    assert (run / "final" / "COMPLETE").is_file()
    # Every released file follows the umask (safetensors alone would write 0600): shareable.
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    assert {oct(p.stat().st_mode & 0o777) for p in (run / "final").iterdir()} == {oct(0o666 & ~mask)}
    ckpt = next((run / "checkpoints").iterdir())
    assert {oct(p.stat().st_mode & 0o777) for p in ckpt.iterdir()} == {oct(0o666 & ~mask)}
    records = read(run / "metrics.jsonl")
    steps = [r for r in records if "loss" in r]
    assert {"step", "loss", "lr", "grad_norm", "tokens_per_s", "data_wait"} <= set(steps[0])
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 5, 10] and all(r["eval_ppl"] > 1 for r in evals)
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]  # it learns
    saved = json.loads((run / "config.json").read_text())
    assert saved["max_steps"] == 10 and saved["model"] == "gpt2-tiny"


def test_refuses_a_run_dir_with_checkpoints_without_resume(train_valid, tmp_path):
    run = tmp_path / "run"
    assert _train(*train_args(train_valid, run), "--max-steps", "3").exit_code == 0
    again = _train(*train_args(train_valid, run), "--max-steps", "3")
    assert again.exit_code == 2 and "--resume" in again.output and "Traceback" not in again.output
    done = _train("--out", str(run), "--resume", "-q")
    assert done.exit_code == 0  # already finished: nothing to do, not an error


def test_resume_refuses_other_data_unless_allowed(train_valid, tmp_path):
    run = tmp_path / "run"
    assert _train(*train_args(train_valid, run), "--max-steps", "6", "--stop-at", "3").exit_code == 0
    changed = tmp_path / "changed"
    shutil.copytree(train_valid / "train", changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["fingerprint"] = "0" * 64  # as if the data were re-made differently
    (changed / "manifest.json").write_text(json.dumps(manifest))
    refused = _train("--out", str(run), "--resume", "--data", str(changed), "-q")
    assert refused.exit_code == 2 and "data" in refused.output
    base = json.loads((run / "config.json").read_text())
    refused = _train("--out", str(run), "--resume", "-q", "--batch-size", str(base["batch_size"] + 1))
    assert refused.exit_code == 2 and "batch_size" in refused.output


@pytest.mark.parametrize("extra, message, code", [
    (["--data", "/nonexistent/ds"], "no such dataset directory", 1),
    (["--model", "gpt2-huge"], "not a preset", 2),
    (["--block-size", "4096"], "above the model's context", 2),
    (["--keep", "1"], "1", 2),
])
def test_bad_input_one_line_before_training(train_valid, tmp_path, extra, message, code):
    args = train_args(train_valid, tmp_path / "run") + extra
    result = _train(*args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_refuses_incomplete_data_and_other_tokenizers(train_valid, tmp_path, corpus_lines):
    incomplete = tmp_path / "incomplete"
    shutil.copytree(train_valid / "train", incomplete)
    (incomplete / "manifest.json").unlink()
    result = _train(*train_args(train_valid, tmp_path / "r1"), "--data", str(incomplete))
    assert result.exit_code == 1 and "incomplete dataset" in result.output
    # A validation set tokenized with another tokenizer is refused, naming both.
    from preprocess.config import PreprocessConfig
    from preprocess.pipeline import run

    text = tmp_path / "v.txt"
    text.write_text("\n".join(corpus_lines[:600]) + "\n", encoding="utf-8")
    run(PreprocessConfig(inputs=(str(text),), out=tmp_path / "other", vocab_size=1100, character_coverage=0.98,
                         workers=0, quiet=True), say=lambda s: None)
    result = _train(*train_args(train_valid, tmp_path / "r2"), "--valid", str(tmp_path / "other"))
    assert result.exit_code == 2 and "tokenized differently" in result.output
    assert str(tmp_path / "other") in result.output and str(train_valid / "train") in result.output


def test_init_from_checks_the_vocabulary(train_valid, tmp_path):
    run = tmp_path / "run"
    assert _train(*train_args(train_valid, run), "--max-steps", "3").exit_code == 0
    ok = _train(*train_args(train_valid, tmp_path / "cont"), "--init-from", str(run / "final"), "--max-steps", "3")
    assert ok.exit_code == 0, ok.output
    wrong = tmp_path / "wrong"
    shutil.copytree(run / "final", wrong)
    config = json.loads((wrong / "config.json").read_text())
    config["vocab_size"] = 500
    (wrong / "config.json").write_text(json.dumps(config))
    bad = _train(*train_args(train_valid, tmp_path / "cont2"), "--init-from", str(wrong), "--max-steps", "3")
    assert bad.exit_code == 2 and "vocabulary" in bad.output


def test_config_file_and_saved_config(train_valid, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(f'data = ["{train_valid / "train"}"]\nout = "{tmp_path / "run"}"\nmodel = "gpt2-tiny"\n'
                    'block_size = 32\nbatch_size = 2\nmax_steps = 3\nwarmup = 1\nworkers = 0\nsample_tokens = 0\n'
                    'lr = 1e-3\n')
    result = _train("--config", str(toml), "--lr", "2e-3", "-q")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["lr"] == 2e-3 and saved["batch_size"] == 2
    toml.write_text("max_steps = [\n")
    bad = _train("--config", str(toml))
    assert bad.exit_code == 2 and "not valid TOML" in bad.output


def test_loss_curve_and_tensorboard_when_installed(train_valid, tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    result = _train(*train_args(train_valid, run), "--max-steps", "6")
    assert result.exit_code == 0, result.output
    png = run / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_resume_between_log_steps_logs_the_same_averages(train_valid, tmp_path):
    """Logged losses average the steps since the last log; a stop between logs keeps that window."""
    common = ["--max-steps", "12", "--log-every", "4", "--checkpoint-every", "100"]
    assert _train(*train_args(train_valid, tmp_path / "a"), *common).exit_code == 0
    assert _train(*train_args(train_valid, tmp_path / "b"), *common, "--stop-at", "6").exit_code == 0
    assert sorted(_losses(tmp_path / "b")) == [4]  # nothing logged for the unfinished window 5-6
    resumed = _train("--out", str(tmp_path / "b"), "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert sorted(_losses(tmp_path / "a")) == [4, 8, 12]
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")


def test_gradient_accumulation_trains_and_resumes_exactly(train_valid, tmp_path):
    common = ["--max-steps", "4", "--grad-accum", "2", "--batch-size", "2", "--workers", "1"]
    assert _train(*train_args(train_valid, tmp_path / "a"), *common).exit_code == 0
    assert _train(*train_args(train_valid, tmp_path / "b"), *common, "--stop-at", "2").exit_code == 0
    assert _train("--out", str(tmp_path / "b"), "--resume", "-q").exit_code == 0
    assert len(_losses(tmp_path / "a")) == 4 and _losses(tmp_path / "a") == _losses(tmp_path / "b")
    meta = json.loads(next((tmp_path / "b" / "checkpoints").glob("step_00000004/meta.json")).read_text())
    assert meta["layout"] == {"world_size": 1, "batch_size": 2, "grad_accum": 2} and meta["global_batch"] == 4
    assert meta["tokens_seen"] == 4 * 2 * 2 * 32  # steps x accum x batch x block


def test_resume_survives_a_half_written_metrics_line_and_refuses_a_corrupt_config(train_valid, tmp_path):
    run = tmp_path / "run"
    assert _train(*train_args(train_valid, run), "--max-steps", "4", "--stop-at", "2").exit_code == 0
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 3, "loss": 9.')  # a kill -9 in the middle of a line
    resumed = _train("--out", str(run), "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert sorted(_losses(run)) == [1, 2, 3, 4]
    (run / "config.json").write_text('{"data": [')
    bad = _train("--out", str(run), "--resume", "--max-steps", "6", "-q")
    assert bad.exit_code == 2 and "config.json: not valid JSON" in bad.output and "Traceback" not in bad.output
