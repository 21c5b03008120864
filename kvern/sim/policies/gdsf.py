"""GDSF, greedy-dual size-frequency with a token-count cost (docs/architecture.md §4).

Priority ``L + uses × cost / size`` with cost = the block's tokens and size = one block, ``L`` the
priority of the last evicted entry; ties go to the entry touched longer ago. This is libCacheSim's
``GDSF.cpp`` (``pri_last_evict + freq × 1e6 / obj_size``, ties FIFO by request time) with the
recompute work of a block as its cost: a partial tail, worth fewer tokens, goes before a full
block of the same history. Unlike ``cost`` the cost does not grow with depth.

The new blocks of a request compete with the cached ones (no ``evict_first``): libCacheSim's GDSF
inserts, then evicts the lowest priority, which may be the newcomer itself (it then raises ``L`` to
its own priority, so a second miss of the same object gets in).
"""

from __future__ import annotations

import numba
import numpy as np

from kvern.sim.policies.base import Policy, PolicyContext, PolicyState


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    uses = 1 if new else s.entry_i[entry] + 1
    s.entry_i[entry] = uses
    return s.scalars[0] + uses * s.block_f[block], float(t)


@numba.njit(cache=True, inline="always")
def evicted(s, entry, block, p1):  # type: ignore[no-untyped-def]
    s.scalars[0] = p1


class GDSF(Policy):
    name = "gdsf"
    summary = "greedy-dual size-frequency, cost = tokens"
    code = 8

    def state(self, ctx: PolicyContext) -> PolicyState:
        return PolicyState.empty(ctx.num_entries)._replace(
            block_f=np.ascontiguousarray(ctx.stream.block_tokens, dtype=np.float64))
