"""README's `train` options table against TrainConfig, where the options and defaults come from."""

from __future__ import annotations

import re
from pathlib import Path

from train.config import FIELDS

README = Path(__file__).resolve().parents[1] / "README.md"
_UNSET = {"none", "auto", "the model's context", "a document start", "by size"}


def _rows() -> list[tuple[list[str], list[str]]]:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("### `train --data DIR --out RUN`"):text.index("The loss is next-token")]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`--"):
            flags = re.findall(r"`--([a-z0-9-]+)", cells[0])
            defaults = [d.strip().strip("`") for d in cells[1].split(",")] if cells[1] else []
            rows.append((flags, defaults))
    return rows


def test_the_readme_table_shows_trainconfigs_defaults():
    rows = _rows()
    assert len(rows) >= 15
    seen = set()
    for flags, defaults in rows:
        names = [f.replace("-", "_") for f in flags]
        assert all(n in FIELDS or n == "config" for n in names), flags
        seen.update(names)
        if not defaults:
            continue
        assert len(defaults) == len(names), (flags, defaults)
        for name, shown in zip(names, defaults):
            value = FIELDS[name].default
            if value is None:
                assert shown in _UNSET, (name, shown)
            elif value is False:
                assert shown == "off", (name, shown)
            else:
                assert shown == str(value), (name, shown, value)
    cli = {n for n, f in FIELDS.items() if f.metadata["cli"]}
    assert cli <= seen, f"options missing from README's table: {sorted(cli - seen)}"


def test_the_help_shows_the_same_defaults():
    from click.testing import CliRunner

    from train.cli import main

    text = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    for name in ("batch_size", "max_steps", "lr", "warmup", "keep", "workers"):
        assert f"[{FIELDS[name].default}]" in text, name
