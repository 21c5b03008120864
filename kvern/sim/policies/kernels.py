"""The compiled dispatch table: policy code -> its ``touch``/``evicted`` (one row per policy file).

The engines call ``policy_touch(code, …)`` in their compiled loops; numba inlines each
policy's function here. To add a policy: give it the next ``code`` and add its row.
"""

from __future__ import annotations

import numba

from kvern.sim.policies import belady, cost, fifo, lfu, lru


@numba.njit(cache=True)
def policy_touch(code, state, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    if code == 0:
        return lru.touch(state, entry, block, t, occ, new)
    if code == 1:
        return fifo.touch(state, entry, block, t, occ, new)
    if code == 2:
        return lfu.touch(state, entry, block, t, occ, new)
    if code == 3:
        return cost.touch(state, entry, block, t, occ, new)
    return belady.touch(state, entry, block, t, occ, new)


@numba.njit(cache=True)
def policy_evicted(code, state, p1):  # type: ignore[no-untyped-def]
    if code == 3:
        cost.evicted(state, p1)
