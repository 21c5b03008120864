"""The compiled interner: ids in order of first appearance, equal to a dict doing the same."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kvern.ingest.stream import intern_keys


def _reference(keys: list[int]) -> tuple[list[int], int]:
    seen: dict[int, int] = {}
    return [seen.setdefault(k, len(seen)) for k in keys], len(seen)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 40), st.integers(0, 2**64 - 1),
                          st.sampled_from([0, 16, 32, 2**63, 2**64 - 16])), max_size=300))
def test_first_seen_ids_equal_a_dict(keys: list[int]) -> None:
    # Small values and multiples of 16 collide in the table's low bits: probing must still separate them.
    ids, n = intern_keys(np.array(keys, dtype=np.uint64))
    assert (ids.tolist(), n) == _reference(keys)


def test_by_hand() -> None:
    ids, n = intern_keys(np.array([7, 7, 3, 2**64 - 1, 3, 7], dtype=np.uint64))
    assert ids.tolist() == [0, 0, 1, 2, 1, 0] and n == 3
    ids, n = intern_keys(np.array([], dtype=np.uint64))
    assert ids.tolist() == [] and n == 0
