"""LRU: least recently used first (docs/architecture.md §4).

Priority = the request index of the last touch. The engine touches a request's blocks tail
→ head at the same request index, and its tie-break (deeper first) then orders them exactly
as vLLM's free queue does: a request's blocks are freed in reverse, so its tail block is
evicted before its parents (``FreeKVCacheBlockQueue``, ``BlockPool.free_blocks``).
"""

from __future__ import annotations

import numba

from kvern.sim.policies.base import Policy, PolicyContext, PolicyState


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    return float(t), 0.0


class LRU(Policy):
    name = "lru"
    summary = "least recently used"
    code = 0
    second_key = False

    def state(self, ctx: PolicyContext) -> PolicyState:
        return PolicyState.empty(1)
