"""The compiled look-ups over several caches at once equal asking each cache in turn."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kvern.cluster import blocklru


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.integers(0, 7), min_size=0, max_size=12),
       held=st.lists(st.lists(st.booleans(), min_size=8, max_size=8), min_size=1, max_size=5),
       dtype=st.sampled_from([np.bool_, np.int32, np.uint8]))
def test_leading_each_and_union_equal_one_by_one(ids: list[int], held: list[list[bool]], dtype: type) -> None:
    arr = np.array(ids, np.int32)
    arrays = [np.array(h, dtype) for h in held]
    pres = blocklru.presence_list(arrays)
    assert pres is not None
    lo, hi = 0, len(ids)
    each = blocklru.leading_each(arr, lo, hi, pres)
    assert each == [blocklru.leading(arr, lo, hi, a) for a in arrays]
    k = 0  # naive union: each block held by some cache
    while k < len(ids) and any(h[ids[k]] for h in held):
        k += 1
    assert blocklru.union_leading(arr, lo, hi, max(each), pres) == k
    arrays[0][:] = 1  # read in place: a change to a cache is seen at once
    assert blocklru.leading_each(arr, lo, hi, pres)[0] == len(ids)


def test_presence_list_refuses_missing_or_mixed_arrays() -> None:
    assert blocklru.presence_list([np.zeros(3, np.bool_), None]) is None
    assert blocklru.presence_list([np.zeros(3, np.bool_), np.zeros(3, np.int32)]) is None
    assert blocklru.presence_list([]) is None
