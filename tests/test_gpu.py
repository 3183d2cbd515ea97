"""Checks that need a CUDA device (marked `gpu`: skipped on CPU-only machines, run by
benchmarks/gpu_check.py on a GPU)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

from tests.conftest import train_args
from train import BlockDataset
from train.cli import main as train
from train.dataset import as_is
from train.metrics import read

pytestmark = pytest.mark.gpu


def test_pinned_batches_arrive_intact(train_valid):
    ds = BlockDataset(train_valid / "train", 32, batch_size=4, seed=0)
    for batch in DataLoader(ds, batch_size=None, num_workers=2, pin_memory=True, collate_fn=as_is):
        assert batch["input_ids"].is_pinned()
        x = batch["input_ids"].to("cuda", non_blocking=True)
        torch.cuda.synchronize()
        assert torch.equal(x.cpu(), batch["input_ids"])
        break


def test_cuda_training_bf16_and_resume_to_rounding(train_valid, tmp_path):
    common = ["--device", "cuda", "--max-steps", "10", "--checkpoint-every", "5", "--workers", "2"]
    a = CliRunner().invoke(train, train_args(train_valid, tmp_path / "a") + common)
    assert a.exit_code == 0, a.output
    b = CliRunner().invoke(train, train_args(train_valid, tmp_path / "b") + common + ["--stop-at", "5"])
    assert b.exit_code == 0, b.output
    c = CliRunner().invoke(train, ["--out", str(tmp_path / "b"), "--resume", "-q"])
    assert c.exit_code == 0, c.output
    la = [r["loss"] for r in read(tmp_path / "a" / "metrics.jsonl") if "loss" in r]
    lb = [r["loss"] for r in read(tmp_path / "b" / "metrics.jsonl") if "loss" in r]
    assert len(la) == len(lb) == 10
    assert la == pytest.approx(lb, rel=2e-2)  # bf16 kernels may differ in rounding, not in course
    records = [r for r in read(tmp_path / "a" / "metrics.jsonl") if "loss" in r]
    assert all("peak_mem_gb" in r for r in records)


def test_fused_adamw_and_sdpa_on_cuda(tokenizer_dir):
    from train.model import Vocab, build_model
    from train.optim import make_optimizer

    model = build_model("gpt2-tiny", None, Vocab(1000, 1, 2), dropout=0.0, pad_vocab_to=64,
                        tokenizer_dir=tokenizer_dir).cuda()
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95), device=torch.device("cuda"))
    assert opt.defaults["fused"] is True
    assert model.config._attn_implementation == "sdpa"
    x = torch.randint(0, 1000, (2, 64), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert model(x).logits.dtype == torch.bfloat16
