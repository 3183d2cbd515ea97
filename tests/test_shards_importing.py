"""shards.importing.split_documents: where documents begin in a chunk of imported tokens, long
stretches without a delimiter cut into MAX_DOC-token pieces."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shards import importing
from shards.importing import Boundaries, split_documents


def _reference(chunk: np.ndarray, b: Boundaries, max_doc: int) -> tuple[int, list[int]]:
    """The rule written the plain way: documents end after (or begin at) each delimiter; each
    longer than max_doc becomes pieces of max_doc tokens and one of the rest."""
    cuts = [i + 1 for i, t in enumerate(chunk) if t == b.delimiter] if not b.first else \
        [i for i, t in enumerate(chunk) if t == b.delimiter and i > 0]
    lengths, prev = [], 0
    for c in cuts:
        n = c - prev
        lengths += [max_doc] * (n // max_doc) + ([n % max_doc] if n % max_doc else [])
        prev = c
    return (cuts[-1] if cuts else 0), lengths


@given(tokens=st.lists(st.integers(0, 3), max_size=80), first=st.booleans(), max_doc=st.integers(1, 9))
def test_pieces_match_the_plain_rule(tokens, first, max_doc):
    chunk = np.array(tokens, dtype=np.int64)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(importing, "MAX_DOC", max_doc)
        n, lengths = split_documents(chunk, Boundaries(2, first))
    want_n, want = _reference(chunk, Boundaries(2, first), max_doc)
    assert (n, lengths.tolist()) == (want_n, want)
    assert lengths.dtype == np.int64 and int(lengths.sum()) == n


def test_worked_example(monkeypatch):
    monkeypatch.setattr(importing, "MAX_DOC", 4)
    chunk = np.array([5] * 8 + [2] + [6, 2] + [7, 7, 7, 2] + [8], dtype=np.int64)  # documents of 9, 2, 4; [8] carried
    n, lengths = split_documents(chunk, Boundaries(2, False))
    assert n == 15 and lengths.tolist() == [4, 4, 1, 2, 4]
