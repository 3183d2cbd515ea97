"""The training loop's parts: loss shift, schedule, weight decay, config merging, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from shards.errors import UsageError
from train.checkpoint import Checkpointer
from train.config import TrainConfig, load_toml, resolve
from train.model import Vocab, build_model, next_token_loss, trimmed_for_release
from train.optim import param_groups
from train.schedule import lr_at


@pytest.fixture
def tiny_model(tokenizer_dir):
    torch.manual_seed(0)
    return build_model("gpt2-tiny", None, Vocab(1000, 1, 2), dropout=0.0, pad_vocab_to=64,
                       tokenizer_dir=tokenizer_dir)


def test_loop_loss_equals_the_models_own_loss(tiny_model):
    # Our labels are already shifted; Hugging Face shifts its labels itself. Fed the unshifted
    # block of B + 1 tokens, the model's own loss covers the same B predictions.
    x = torch.randint(0, 1000, (3, 33))
    ours = next_token_loss(tiny_model(x[:, :-1]).logits, x[:, 1:])
    theirs = tiny_model(x, labels=x).loss
    assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    # Passing the shifted labels to the model would shift twice: a different number.
    wrong = tiny_model(x[:, :-1], labels=x[:, 1:]).loss
    assert not torch.allclose(ours, wrong)


def test_model_has_the_data_vocabulary_no_dropout_no_cache(tiny_model):
    cfg = tiny_model.config
    assert cfg.vocab_size == 1024  # 1000 rounded up to a multiple of 64 for the GPU
    assert (cfg.bos_token_id, cfg.eos_token_id) == (1, 2)
    assert cfg.resid_pdrop == cfg.embd_pdrop == cfg.attn_pdrop == 0.0
    assert cfg.use_cache is False
    assert cfg._attn_implementation == "sdpa"
    released = trimmed_for_release(tiny_model, 1000)
    assert released.config.vocab_size == 1000 and released.lm_head.weight.shape[0] == 1000
    assert released.lm_head.weight.data_ptr() == released.transformer.wte.weight.data_ptr()  # still tied


def test_weight_decay_groups(tiny_model):
    decay, no_decay = param_groups(tiny_model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(tiny_model.parameters()))  # the tied embedding once


def test_lr_schedule_by_hand():
    f = lambda s: lr_at(s, lr=1.0, warmup=10, max_steps=110, min_lr_ratio=0.1)  # noqa: E731
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)  # step 9 is the peak
    assert f(10) == pytest.approx(1.0)  # the cosine starts there
    assert f(59) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 49 / 99)))  # 49 of 99 decay steps
    assert f(109) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)  # the last step is the floor


def test_toml_then_flags(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('data = ["a", "b"]\nweights = [0.7, 0.3]\nout = "r"\nmax-steps = 50\nwarmup = 5\nlr = 1e-3\n')
    cfg = resolve(load_toml(toml), {"lr": 2e-3, "data": ()})
    assert cfg.data == ("a", "b") and cfg.weights == (0.7, 0.3)
    assert cfg.max_steps == 50 and cfg.lr == 2e-3  # the flag wins over the file
    toml.write_text("max_steps = [\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_toml(toml)
    toml.write_text("learning_rate = 1\n")
    with pytest.raises(UsageError, match="unknown setting 'learning_rate'"):
        load_toml(toml)


@pytest.mark.parametrize("bad, message", [({"keep": 1}, "at least 2"), ({"weights": (1.0,), "data": ("a", "b")}, "--weights"),
                                          ({"device": "tpu"}, "--device"), ({"stop_at": 5000}, "--stop-at")])
def test_config_validation(bad, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**{"data": ("a",), "out": "r", **bad})


def _save(ck: Checkpointer, step: int) -> Path:
    meta = {"tokens_seen": step, "layout": {"world_size": 1, "batch_size": 1, "grad_accum": 1},
            "fingerprints": {"data": ["f"], "valid": None}, "config": {},
            "model": {"n_positions": 8, "config": {}}}
    return ck.save(step, {"model": {"w": torch.tensor([step])}, "optimizer": {}, "ranks": []}, meta)


def test_checkpoints_atomic_marked_and_pruned(tmp_path):
    ck = Checkpointer(tmp_path, keep=2)
    for step in (10, 20, 30, 40):
        _save(ck, step)
    assert [p.name for p in ck.complete()] == ["step_00000030", "step_00000040"]
    # A kill -9 while writing step 50: a temp dir, or a renamed dir without its marker.
    (tmp_path / "checkpoints" / ".step_00000050.tmp").mkdir()
    (tmp_path / "checkpoints" / "step_00000060").mkdir()
    latest = ck.latest()
    assert latest.path.name == "step_00000040" and latest.step == 40
    assert int(ck.load_state(latest)["model"]["w"]) == 40
    _save(ck, 70)
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == ["step_00000040", "step_00000070"]  # stale temp and unmarked dirs cleaned


def test_resolved_config_round_trips_through_json(tmp_path):
    cfg = TrainConfig(data=("a", "b"), weights=(1.0, 2.0), out="r")
    again = resolve(json.loads(json.dumps(cfg.to_json())), {})
    assert again == cfg


def test_a_checkpoint_deleted_halfway_is_never_complete(tmp_path, monkeypatch):
    """Pruning removes the COMPLETE marker first: a kill in the middle of the deletion leaves an
    unmarked directory (never loaded), not a "complete" one with files missing."""
    import train.checkpoint as ck

    c = Checkpointer(tmp_path, keep=2)
    for step in (10, 20):
        _save(c, step)
    real = ck.shutil.rmtree

    def killed(path, *args, **kwargs):
        if Path(path).name == "step_00000010":
            (Path(path) / "state.pt").unlink()  # the deletion got this far
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ck.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        _save(c, 30)
    monkeypatch.setattr(ck.shutil, "rmtree", real)
    assert [p.name for p in c.complete()] == ["step_00000020", "step_00000030"]
    assert c.latest().step == 30
