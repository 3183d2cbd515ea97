"""Building the Hugging Face GPT-2: from a preset, a GPT2Config JSON, or an existing model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from shards.errors import UsageError
from train.presets import PRESETS


@dataclass(frozen=True, slots=True)
class Vocab:
    """The dataset tokenizer's facts the model must agree with."""

    size: int
    bos_id: int | None
    eos_id: int | None


def _rounded(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def gpt2_config(model: str, vocab: Vocab, *, dropout: float, pad_vocab_to: int):
    """A GPT2Config for a preset name or a JSON file; vocabulary and special ids from the data."""
    from transformers import GPT2Config

    if model in PRESETS:
        shape = dict(PRESETS[model])
    else:
        path = Path(model)
        if not path.is_file():
            raise UsageError(f"--model {model}: not a preset ({', '.join(PRESETS)}) and no such JSON file")
        try:
            shape = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"--model {model}: not valid JSON ({e})") from None
        if not isinstance(shape, dict):
            raise UsageError(f"--model {model}: expected a JSON object of GPT2Config fields")
        if shape.get("model_type", "gpt2") != "gpt2":
            raise UsageError(f"--model {model}: model_type {shape['model_type']!r} is not gpt2")
    # The vocabulary always comes from the dataset; dropout is explicit (0 for pretraining).
    shape.update(vocab_size=_rounded(vocab.size, pad_vocab_to), bos_token_id=vocab.bos_id,
                 eos_token_id=vocab.eos_id, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                 use_cache=False)
    try:
        config = GPT2Config(**{k: v for k, v in shape.items() if k not in ("architectures", "transformers_version")})
    except (TypeError, ValueError) as e:
        raise UsageError(f"--model {model}: {e}") from None
    if config.n_embd % config.n_head:
        raise UsageError(f"--model {model}: n_embd {config.n_embd} is not a multiple of n_head {config.n_head}")
    return config


def build_model(model: str | None, init, vocab: Vocab, *, dropout: float, pad_vocab_to: int, tokenizer_dir: Path,
                weights: bool = True):
    """A GPT2LMHeadModel with SDPA attention and no KV cache while training: a fresh one of the
    `model` preset/JSON shape, or the weights of `init` (a train.preflight.Weights). With a
    checkpoint and `weights=False`, only its shape (a resume loads the weights with the rest)."""
    from transformers import GPT2LMHeadModel

    if init is not None and init.kind == "hf":
        return load_pretrained(str(init.path), vocab, dropout=dropout, tokenizer_dir=tokenizer_dir)
    if init is not None:
        return from_checkpoint(init.path, init.checkpoint.meta, dropout=dropout, weights=weights)
    config = gpt2_config(model, vocab, dropout=dropout, pad_vocab_to=pad_vocab_to)
    return GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")


def from_checkpoint(path: Path, meta: dict, *, dropout: float, weights: bool = True):
    """The model saved in a checkpoint: its shape from meta.json, its weights from state.pt."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from train.checkpoint import load_state

    shape = {k: v for k, v in meta["model"]["config"].items() if k not in ("architectures", "transformers_version")}
    shape.update(resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, use_cache=False)
    model = GPT2LMHeadModel._from_config(GPT2Config(**shape), attn_implementation="sdpa")
    if weights:
        model.load_state_dict(load_state(path)["model"])
    return model


def model_meta(model) -> dict:
    """What a checkpoint records of the model, to rebuild it without the run's settings."""
    config = model.config.to_dict()
    return {"n_positions": int(model.config.n_positions), "config": config}


def load_pretrained(path: str, vocab: Vocab, *, dropout: float, tokenizer_dir: Path):
    from transformers import AutoConfig, GPT2LMHeadModel

    p = Path(path)
    if not (p / "config.json").is_file():
        raise UsageError(f"--init-from {path}: not a Hugging Face model directory (no config.json)")
    from shards.tokenizer_guard import check_inert

    check_inert(p, f"--init-from {path}")  # its config.json must not name custom code either
    config = AutoConfig.from_pretrained(str(p), trust_remote_code=False, local_files_only=True)
    if config.model_type != "gpt2":
        raise UsageError(f"--init-from {path}: model_type {config.model_type!r} is not gpt2")
    if config.vocab_size < vocab.size:
        raise UsageError(f"--init-from {path}: its vocabulary has {config.vocab_size} tokens, the dataset's "
                         f"tokenizer {vocab.size}; they must be the same tokenizer")
    if not check_tokenizer_match(p, path, tokenizer_dir) and config.vocab_size != vocab.size:
        raise UsageError(f"--init-from {path}: its vocabulary has {config.vocab_size} tokens, the dataset's "
                         f"tokenizer {vocab.size}, and it holds no tokenizer to compare; it must be the same tokenizer")
    config.update({"resid_pdrop": dropout, "embd_pdrop": dropout, "attn_pdrop": dropout, "use_cache": False})
    return GPT2LMHeadModel.from_pretrained(str(p), config=config, attn_implementation="sdpa", local_files_only=True,
                                           trust_remote_code=False)


def check_tokenizer_match(model_dir: Path, shown: str, tokenizer_dir: Path) -> bool:
    """Refuse a model whose saved tokenizer differs from the dataset's (token by token).
    False when the model directory holds no tokenizer to compare."""
    if not any((model_dir / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        return False
    from shards.tokenizer_guard import load_tokenizer

    theirs = load_tokenizer(model_dir, f"--init-from {shown}").get_vocab()
    ours = load_tokenizer(tokenizer_dir, str(tokenizer_dir)).get_vocab()
    if theirs != ours:
        raise UsageError(f"--init-from {shown}: its tokenizer's vocabulary differs from the dataset's tokenizer "
                         f"({len(theirs)} vs {len(ours)} tokens); preprocess the data with --tokenizer {shown}")
    return True


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (b, T, V) against labels (b, T) that are already shifted.

    The dataset's labels are the inputs moved one token left, so position t predicts
    labels[t] directly. (Passing labels= to GPT2LMHeadModel would shift them a second time.)
    """
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1))


def trimmed_for_release(model, vocab_size: int):
    """The model with its embedding cut back to the tokenizer's size, ready for save_pretrained."""
    if model.config.vocab_size != vocab_size:
        model.resize_token_embeddings(vocab_size)
    model.config.use_cache = True  # training ran without the KV cache; generation wants it
    if model.generation_config is not None:
        model.generation_config.use_cache = True
    return model
