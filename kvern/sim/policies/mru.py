"""MRU: the most recently used evictable leaf first, as SGLang's ``MRUStrategy`` (docs/architecture.md §4).

Priority = minus the request index of the last touch. On a prefix tree only leaves are candidates,
so MRU drops the newest *leaf* (a request's tail before its head: deeper first). It evicts before
the request's new blocks join (``evict_first``), as SGLang evicts while allocating them; otherwise
it would drop the blocks it just inserted and never cache anything new once full.
"""

from __future__ import annotations

import numba

from kvern.sim.policies.base import Policy, PolicyContext, PolicyState


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    return -float(t), 0.0


class MRU(Policy):
    name = "mru"
    summary = "most recently used leaf first"
    code = 9
    second_key = False
    evict_first = True

    def state(self, ctx: PolicyContext) -> PolicyState:
        return PolicyState.empty(1)
