"""Belady (MIN): evict the entry whose next use lies farthest in the future (docs/architecture.md §4).

Offline: it reads the next request that holds each block from the stream (checked when the
state is built, as libCacheSim's ``Belady.c`` checks for next-access times). Because a
block's prefix is used whenever the block is, a parent's next use is never later than its
child's: the farthest leaf is as far as the farthest block, so restricting to leaves loses
nothing. Blocks never used again go first (ties: deeper first, then lower id).

Under the ``ideal`` profile this is the optimum of hit *blocks* over all policies; with
block-aligned prompts that is also the optimum of hit tokens (a partial tail weighs less than
a block, so with partial tails the token optimum can differ slightly).
"""

from __future__ import annotations

import numba
import numpy as np

from kvern.ingest.stream import BlockStream
from kvern.sim.policies.base import Policy, PolicyContext, PolicyState


def next_use(stream: BlockStream) -> np.ndarray:
    """int32[N]: for each access, the request index of the next access to the same block,
    or ``num_requests`` (never) — keys are chained, so a block occurs once per request."""
    ids = np.ascontiguousarray(stream.block_ids, dtype=np.int32)
    offsets = np.ascontiguousarray(stream.req_offsets, dtype=np.int64)
    assert stream.num_requests < 2**31, "request indices must fit int32"
    return _next_use(offsets, ids, max(int(stream.num_unique), 1), stream.num_requests)


@numba.njit(cache=True)
def _next_use(offsets, ids, num_unique, num_requests):  # type: ignore[no-untyped-def]
    """One pass from the last access back, remembering each block's latest request seen."""
    out = np.empty(len(ids), np.int32)
    upcoming = np.full(num_unique, num_requests, np.int32)
    for r in range(len(offsets) - 2, -1, -1):
        for i in range(offsets[r + 1] - 1, offsets[r] - 1, -1):
            b = ids[i]
            out[i] = upcoming[b]
            upcoming[b] = r
    return out


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    return float(-s.access_i[occ]), 0.0


class Belady(Policy):
    name = "belady"
    summary = "offline optimum: farthest next use first"
    code = 4
    second_key = False
    offline = True

    def state(self, ctx: PolicyContext) -> PolicyState:
        nu = next_use(ctx.stream)
        assert len(nu) == len(ctx.stream.block_ids), "Belady needs the next use of every access"
        return PolicyState.empty(1)._replace(access_i=nu)
