"""SLRU: segmented LRU, a probation and a protected segment (docs/architecture.md §4).

A new block enters probation; a hit moves it to protected (most recent end). When protected holds
more than its share (``protected_ratio`` of the capacity, 0.8 by default) its least recent block is
demoted to probation's most recent end; evictions take probation's least recent block, or
protected's when probation has none. This is the two-segment SLRU (Karedla et al. 1994) that
serving engines offer; libCacheSim's ``SLRU.c`` generalises it to four equal segments.

The segments are the engine's two heaps (LRU by touch order); ``pick`` names protected while it is
over its share and ``on_pop`` demotes. Prefix-closed variant: only leaves are candidates; a
segment without evictable leaves yields to the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numba
import numpy as np

from kvern.sim.policies.base import Policy, PolicyContext, PolicyState

PROBATION, PROTECTED = 0, 1
# entry_m columns: the entry's segment and its touch order (side by side: one cache line per entry)
SEGMENT, ORDER = 0, 1
# scalars
SEQ, N_PROB, N_PROT, PROT_SIZE = range(4)


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    if new:
        s.entry_m[entry, SEGMENT] = PROBATION
        s.scalars[N_PROB] += 1.0
    elif s.entry_m[entry, SEGMENT] == PROBATION:
        s.entry_m[entry, SEGMENT] = PROTECTED
        s.scalars[N_PROB] -= 1.0
        s.scalars[N_PROT] += 1.0
    s.entry_m[entry, ORDER] = int(s.scalars[SEQ])
    s.scalars[SEQ] += 1.0
    return float(s.entry_m[entry, ORDER]), 0.0


@numba.njit(cache=True, inline="always")
def queue_of(s, entry):  # type: ignore[no-untyped-def]
    return s.entry_m[entry, SEGMENT]


@numba.njit(cache=True, inline="always")
def pick(s):  # type: ignore[no-untyped-def]
    return PROTECTED if s.scalars[N_PROT] > s.scalars[PROT_SIZE] else PROBATION


@numba.njit(cache=True, inline="always")
def on_pop(s, entry, block, t, p1, p2):  # type: ignore[no-untyped-def]
    if s.entry_m[entry, SEGMENT] == PROTECTED and s.scalars[N_PROT] > s.scalars[PROT_SIZE]:
        s.entry_m[entry, SEGMENT] = PROBATION  # demoted: most recent end of probation
        s.scalars[N_PROT] -= 1.0
        s.scalars[N_PROB] += 1.0
        s.entry_m[entry, ORDER] = int(s.scalars[SEQ])
        s.scalars[SEQ] += 1.0
        return True, float(s.entry_m[entry, ORDER]), 0.0
    return False, p1, p2


@numba.njit(cache=True, inline="always")
def evicted(s, entry, block, p1):  # type: ignore[no-untyped-def]
    s.scalars[N_PROB + s.entry_m[entry, SEGMENT]] -= 1.0


class SLRU(Policy):
    name = "slru"
    summary = "segmented LRU: probation and protected segments"
    code = 10
    second_key = False
    queues = 2
    evict_first = True
    defaults: ClassVar[Mapping[str, Any]] = {"protected_ratio": 0.8}

    def state(self, ctx: PolicyContext) -> PolicyState:
        st = PolicyState.empty(1)
        st.scalars[PROT_SIZE] = int(max(ctx.capacity, 1) * float(self.params["protected_ratio"]))
        return st._replace(entry_m=np.zeros((ctx.num_entries, 2), np.int64))
