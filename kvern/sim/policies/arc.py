"""ARC (Megiddo & Modha, FAST 2003): recency and frequency lists balanced by ghosts (architecture.md §4).

T1 holds blocks seen once since they entered, T2 blocks seen again; B1 and B2 remember blocks
evicted from each. A miss found in B1 grows T1's target ``p`` by ``max(|B2|/|B1|, 1)``, one found in
B2 shrinks it by ``max(|B1|/|B2|, 1)``, and the block enters T2; other misses enter T1. Eviction
takes T1's least recent block when ``|T1| > p`` (and T1 is not empty), else T2's. Ghosts keep
``|T1| + |B1| ≤ c`` and all four lists ``≤ 2c``.

T1 and T2 are the engine's two heaps (LRU by touch order), ``pick`` is ARC's REPLACE (with its
tie rule: T1 goes when ``|T1| = p`` and the miss was found in B2). A miss is looked up in the
ghosts, and ``p`` adapted, before the evictions it causes (``on_miss``, cases II and III); the block
joins T2 after them. The ghost bounds are kept after each step rather than by deleting B1's or
B2's LRU before REPLACE (case IV), which leaves the same lists. On a flat stream this is the
paper's ARC, and libCacheSim's ``ARC.c``, request by request (tested). Prefix-closed variant
(prefix traces only): only leaves of a list are candidates; a list without evictable leaves
yields to the other; a request's misses all adapt ``p`` before its evictions.
"""

from __future__ import annotations

import numba
import numpy as np

import kvern.sim.policies.ghost as ghost
from kvern.sim.policies.base import Policy, PolicyContext, PolicyState

T1, T2 = 0, 1
# scalars
SEQ, N_T1, N_T2, P, CAP, IN_B2 = range(6)


@numba.njit(cache=True, inline="always")
def _trim(s):  # type: ignore[no-untyped-def]
    c = int(s.scalars[CAP])
    ghost.trim(s, 0, max(c - int(s.scalars[N_T1]), 0))
    rest = 2 * c - int(s.scalars[N_T1]) - int(s.scalars[N_T2]) - s.log_ctr[0, ghost.COUNT]
    ghost.trim(s, 1, max(rest, 0))


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    if new:
        q = T2 if ghost.taken(s, block) >= 0 else T1
        s.scalars[IN_B2] = 0.0
        s.entry_m[entry, 0] = q
        s.scalars[N_T1 + q] += 1.0
        _trim(s)
    elif s.entry_m[entry, 0] == T1:
        s.entry_m[entry, 0] = T2
        s.scalars[N_T1] -= 1.0
        s.scalars[N_T2] += 1.0
    s.entry_i[entry] = int(s.scalars[SEQ])
    s.scalars[SEQ] += 1.0
    return float(s.entry_i[entry]), 0.0


@numba.njit(cache=True, inline="always")
def on_miss(s, block, t):  # type: ignore[no-untyped-def]
    """Cases II and III of the paper: adapt ``p`` before REPLACE runs (the block joins T2 later)."""
    b1 = float(s.log_ctr[0, ghost.COUNT])
    b2 = float(s.log_ctr[1, ghost.COUNT])
    if ghost.member(s, 0, block):
        s.scalars[P] = min(s.scalars[CAP], s.scalars[P] + max(b2 / b1, 1.0))
    elif ghost.member(s, 1, block):
        s.scalars[P] = max(0.0, s.scalars[P] - max(b1 / b2, 1.0))
        s.scalars[IN_B2] = 1.0
    ghost.take(s, block)


@numba.njit(cache=True, inline="always")
def queue_of(s, entry):  # type: ignore[no-untyped-def]
    return s.entry_m[entry, 0]


@numba.njit(cache=True, inline="always")
def pick(s):  # type: ignore[no-untyped-def]
    n1 = s.scalars[N_T1]
    tie = s.scalars[IN_B2] > 0.0 and n1 == s.scalars[P]
    return T1 if n1 >= 1.0 and (n1 > s.scalars[P] or tie) else T2


@numba.njit(cache=True, inline="always")
def on_pop(s, entry, block, t, p1, p2):  # type: ignore[no-untyped-def]
    return False, p1, p2


@numba.njit(cache=True, inline="always")
def evicted(s, entry, block, p1):  # type: ignore[no-untyped-def]
    q = s.entry_m[entry, 0]
    s.scalars[N_T1 + q] -= 1.0
    ghost.insert(s, q, block, 2 * int(s.scalars[CAP]))
    _trim(s)


class ARC(Policy):
    name = "arc"
    summary = "ARC: recency and frequency lists balanced by ghosts"
    code = 6
    second_key = False
    queues = 2
    evict_first = True

    def state(self, ctx: PolicyContext) -> PolicyState:
        st = PolicyState.empty(ctx.num_entries)
        st.scalars[CAP] = max(ctx.capacity, 1)
        # B1 and B2 hold at most 2c between them; each eviction inserts once
        block_i, log_i, log_ctr = ghost.fresh(ctx.stream.num_unique, 2, 2 * int(st.scalars[CAP]),
                                              len(ctx.stream.block_ids))
        return st._replace(entry_m=np.zeros((ctx.num_entries, 2), np.int64), block_i=block_i, log_i=log_i,
                           log_ctr=log_ctr)
