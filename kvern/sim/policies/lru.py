"""LRU: least recently used first (DESIGN.md §4).

Priority = the request index of the last touch. The engine touches a request's blocks tail
→ head at the same request index, and its tie-break (deeper first) then orders them exactly
as vLLM's free queue does: a request's blocks are freed in reverse, so its tail block is
evicted before its parents (``FreeKVCacheBlockQueue``, ``BlockPool.free_blocks``).
"""

from __future__ import annotations

from kvern.sim.policies.base import Policy, PolicyContext, Priority


class LRU(Policy):
    name = "lru"
    summary = "least recently used"

    def bind(self, ctx: PolicyContext) -> None:
        pass

    def touch(self, entry: int, block: int, t: int, occ: int, new: bool) -> Priority:
        return (t, 0)
