"""Belady (MIN): evict the entry whose next use lies farthest in the future (DESIGN.md §4).

Offline: it reads the next request that holds each block from the stream (checked at bind,
as libCacheSim's ``Belady.c`` checks for next-access times). Because a block's prefix is used
whenever the block is, a parent's next use is never later than its child's: the farthest
leaf is as far as the farthest block, so restricting to leaves loses nothing. Blocks never
used again go first (ties: deeper first, then lower id).

Under the ``ideal`` profile with block-aligned prompts this is the optimum of hit blocks
(and so of hit tokens) for any policy; with partial tails, token weights differ and it is
the optimum of hit blocks only.
"""

from __future__ import annotations

import numpy as np

from kvern.sim.policies.base import Policy, PolicyContext, Priority
from kvern.sim.stream import BlockStream


def next_use(stream: BlockStream) -> np.ndarray:
    """int64[N]: for each access, the request index of the next access to the same block,
    or ``num_requests`` (never) — keys are chained, so a block occurs once per request."""
    ids = stream.block_ids
    req_of = np.repeat(np.arange(stream.num_requests, dtype=np.int64), np.diff(stream.req_offsets))
    order = np.lexsort((np.arange(len(ids)), ids))
    out = np.full(len(ids), stream.num_requests, dtype=np.int64)
    same = ids[order[1:]] == ids[order[:-1]]
    out[order[:-1][same]] = req_of[order[1:][same]]
    return out


class Belady(Policy):
    name = "belady"
    summary = "offline optimum: farthest next use first"
    offline = True

    def bind(self, ctx: PolicyContext) -> None:
        nu = next_use(ctx.stream)
        assert len(nu) == len(ctx.stream.block_ids), "Belady needs the next use of every access"
        self._neg_next = (-nu).tolist()

    def touch(self, entry: int, block: int, t: int, occ: int, new: bool) -> Priority:
        return (self._neg_next[occ], 0)
