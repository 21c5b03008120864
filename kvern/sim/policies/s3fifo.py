"""S3-FIFO (Yang et al., SOSP 2023): small FIFO, main FIFO with re-insertion, ghost (docs/architecture.md §4).

As libCacheSim's ``S3FIFO.c`` with its defaults (small queue ``int(capacity × 0.1)`` blocks, main
the rest, ghost ``int(capacity × 0.9)`` blocks, move to main at 2 hits, 2-bit counts in main): a
new block enters the small queue, or the main queue if the ghost remembers it (or, before the
first eviction, once the small queue is full). The ghost is looked up, and a block found there
leaves it, when the request misses, before the evictions the miss causes (``on_miss``, as
libCacheSim's ``find``); the block joins the main queue after them. An eviction evicts from the
main queue when it holds more than its size or the small queue is empty, else from the small
queue. Evicting from the small queue moves a block hit twice or more (since it entered) to the
main queue with its count reset, and drops the first other one into the ghost; evicting from the
main queue re-inserts a block hit since it entered (its count capped at 3, minus one) and drops
the first other one. On a flat stream this evicts, request by request, what libCacheSim's does
(tested at 5 to 200 blocks).

One difference on flat streams, by design: libCacheSim refuses an object as large as its small
queue (``S3FIFO_insert``, meant for objects of many bytes), so with unit blocks and the default
ratio it caches nothing below 20 blocks (and exits below 10, where its small queue is empty);
here the small queue is at least one block and the algorithm runs unchanged. With a small queue
of two or more blocks the two agree at any capacity.

Each queue is one of the engine's two heaps, ordered by entry into the queue; ``on_pop`` does the
moves and ``pick`` chooses the queue, sticking to it until something is evicted (libCacheSim's
inner loops). Prefix-closed variant (prefix traces only): a queue's oldest entry that is not a
leaf waits (the next leaf of that queue goes first), and an empty-of-leaves queue yields to the
other. New blocks join after their request's evictions (``evict_first``), tail first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numba
import numpy as np

import kvern.sim.policies.ghost as ghost
from kvern.sim.policies.base import Policy, PolicyContext, PolicyState

QUEUE, FREQ, ORDER = 0, 1, 2
"""entry_m columns: the entry's queue, its hits, its entry order (side by side: one cache line)."""
SMALL, MAIN = 0, 1
# scalars
SEQ, N_SMALL, N_MAIN, EVICTED_ONCE, SMALL_SIZE, MAIN_SIZE, GHOST_SIZE, MODE, THRESHOLD = range(9)


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    if new:
        ghost_hit = ghost.taken(s, block) >= 0
        small_full = s.scalars[EVICTED_ONCE] == 0.0 and s.scalars[N_SMALL] >= s.scalars[SMALL_SIZE]
        q = MAIN if ghost_hit or small_full else SMALL
        s.entry_m[entry, QUEUE] = q
        s.entry_m[entry, FREQ] = 0
        s.scalars[N_SMALL + q] += 1.0
        s.entry_m[entry, ORDER] = int(s.scalars[SEQ])
        s.scalars[SEQ] += 1.0
    else:
        s.entry_m[entry, FREQ] += 1
    return float(s.entry_m[entry, ORDER]), 0.0


@numba.njit(cache=True, inline="always")
def on_miss(s, block, t):  # type: ignore[no-untyped-def]
    ghost.take(s, block)  # before the evictions, as libCacheSim's find


@numba.njit(cache=True, inline="always")
def queue_of(s, entry):  # type: ignore[no-untyped-def]
    return s.entry_m[entry, QUEUE]


@numba.njit(cache=True, inline="always")
def pick(s):  # type: ignore[no-untyped-def]
    s.scalars[EVICTED_ONCE] = 1.0
    if s.scalars[MODE] < 0.0:
        over = s.scalars[N_MAIN] > s.scalars[MAIN_SIZE] or s.scalars[N_SMALL] == 0.0
        s.scalars[MODE] = MAIN if over else SMALL
    return int(s.scalars[MODE])


@numba.njit(cache=True, inline="always")
def on_pop(s, entry, block, t, p1, p2):  # type: ignore[no-untyped-def]
    q = s.entry_m[entry, QUEUE]
    s.scalars[MODE] = q  # the engine fell back to the other queue: so did libCacheSim's next evict
    f = s.entry_m[entry, FREQ]
    if q == SMALL:
        if f < s.scalars[THRESHOLD]:
            return False, p1, p2
        s.entry_m[entry, QUEUE] = MAIN
        s.entry_m[entry, FREQ] = 0
        s.scalars[N_SMALL] -= 1.0
        s.scalars[N_MAIN] += 1.0
    else:
        if f < 1:
            return False, p1, p2
        s.entry_m[entry, FREQ] = min(f, 3) - 1
    s.entry_m[entry, ORDER] = int(s.scalars[SEQ])
    s.scalars[SEQ] += 1.0
    return True, float(s.entry_m[entry, ORDER]), 0.0


@numba.njit(cache=True, inline="always")
def evicted(s, entry, block, p1):  # type: ignore[no-untyped-def]
    s.scalars[MODE] = -1.0
    if s.entry_m[entry, QUEUE] == SMALL:
        s.scalars[N_SMALL] -= 1.0
        ghost.insert(s, 0, block, int(s.scalars[GHOST_SIZE]))
    else:
        s.scalars[N_MAIN] -= 1.0


class S3FIFO(Policy):
    name = "s3fifo"
    summary = "S3-FIFO: small FIFO, main FIFO with re-insertion, ghost"
    code = 5
    second_key = False
    queues = 2
    evict_first = True
    defaults: ClassVar[Mapping[str, Any]] = {"small_ratio": 0.1, "ghost_ratio": 0.9, "move_threshold": 2}

    def state(self, ctx: PolicyContext) -> PolicyState:
        cap = max(ctx.capacity, 1)
        st = PolicyState.empty(1)
        small = max(int(cap * float(self.params["small_ratio"])), 1)
        st.scalars[SMALL_SIZE] = small
        st.scalars[MAIN_SIZE] = cap - small
        st.scalars[GHOST_SIZE] = int(cap * float(self.params["ghost_ratio"]))
        st.scalars[MODE] = -1.0
        st.scalars[THRESHOLD] = float(self.params["move_threshold"])
        block_i, log_i, log_ctr = ghost.fresh(ctx.stream.num_unique, 1, int(st.scalars[GHOST_SIZE]),
                                              len(ctx.stream.block_ids))
        return st._replace(entry_m=np.zeros((ctx.num_entries, 3), np.int64), block_i=block_i, log_i=log_i,
                           log_ctr=log_ctr)
