"""GPT-2 model shapes by name; anything else is a path to a GPT2Config JSON."""

from __future__ import annotations

PRESETS: dict[str, dict[str, int]] = {
    # Trains on a laptop CPU in seconds: for tests and smoke runs.
    "gpt2-tiny": {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 128},
    # The quickstart's model: minutes on a 2-core CPU.
    "gpt2-mini": {"n_layer": 4, "n_head": 4, "n_embd": 256, "n_positions": 256},
    # The GPT-2 family (124M, 350M, 774M, 1.5B with the 50,257-token vocabulary).
    "gpt2-small": {"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024},
    "gpt2-medium": {"n_layer": 24, "n_head": 16, "n_embd": 1024, "n_positions": 1024},
    "gpt2-large": {"n_layer": 36, "n_head": 20, "n_embd": 1280, "n_positions": 1024},
    "gpt2-xl": {"n_layer": 48, "n_head": 25, "n_embd": 1600, "n_positions": 1024},
}
