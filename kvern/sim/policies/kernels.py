"""The compiled dispatch table: policy code -> its hooks (one row per policy file).

The engines call ``policy_touch(code, …)`` and the optional hooks below in their compiled loops;
numba inlines each policy's function here. To add a policy: give it the next ``code`` and add its
row to every hook it implements (a policy without a hook gets the default in the last line).
The engines pass ``code`` as a compile-time constant (``kvern.sim.engine.Const``), so numba
drops the other rows: each policy's kernel holds only its own hooks.

The hooks are compiled without reference counting (``_nrt=False``, as the engines' helpers):
they get the policy's state tuple on every block, and counting a reference to each of its
arrays at each call took most of the time of the queue policies (s3fifo, arc, sieve, slru,
followup: 1.4–3.3 M blocks/s before, 6–14 M after, on the benchmark's Mooncake stream). So a
hook must not allocate: every array it uses lives in the policy's state (followup's refit
keeps its scratch there).
"""

from __future__ import annotations

import numba

from kvern.sim.policies import arc, belady, cost, fifo, followup, gdsf, lfu, lru, mru, s3fifo, sieve, slru


@numba.njit(cache=True, _nrt=False)
def policy_touch(code, state, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    if code == 0:
        return lru.touch(state, entry, block, t, occ, new)
    if code == 1:
        return fifo.touch(state, entry, block, t, occ, new)
    if code == 2:
        return lfu.touch(state, entry, block, t, occ, new)
    if code == 3:
        return cost.touch(state, entry, block, t, occ, new)
    if code == 5:
        return s3fifo.touch(state, entry, block, t, occ, new)
    if code == 6:
        return arc.touch(state, entry, block, t, occ, new)
    if code == 7:
        return sieve.touch(state, entry, block, t, occ, new)
    if code == 8:
        return gdsf.touch(state, entry, block, t, occ, new)
    if code == 9:
        return mru.touch(state, entry, block, t, occ, new)
    if code == 10:
        return slru.touch(state, entry, block, t, occ, new)
    if code == 11:
        return followup.touch(state, entry, block, t, occ, new)
    return belady.touch(state, entry, block, t, occ, new)


@numba.njit(cache=True, _nrt=False)
def policy_evicted(code, state, entry, block, p1):  # type: ignore[no-untyped-def]
    if code == 3:
        cost.evicted(state, entry, block, p1)
    elif code == 5:
        s3fifo.evicted(state, entry, block, p1)
    elif code == 6:
        arc.evicted(state, entry, block, p1)
    elif code == 7:
        sieve.evicted(state, entry, block, p1)
    elif code == 8:
        gdsf.evicted(state, entry, block, p1)
    elif code == 10:
        slru.evicted(state, entry, block, p1)
    elif code == 11:
        followup.evicted(state, entry, block, p1)


@numba.njit(cache=True, _nrt=False)
def policy_on_pop(code, state, entry, block, t, p1, p2):  # type: ignore[no-untyped-def]
    if code == 5:
        return s3fifo.on_pop(state, entry, block, t, p1, p2)
    if code == 6:
        return arc.on_pop(state, entry, block, t, p1, p2)
    if code == 7:
        return sieve.on_pop(state, entry, block, t, p1, p2)
    if code == 10:
        return slru.on_pop(state, entry, block, t, p1, p2)
    if code == 11:
        return followup.on_pop(state, entry, block, t, p1, p2)
    return False, p1, p2


@numba.njit(cache=True, _nrt=False)
def policy_queue(code, state, entry):  # type: ignore[no-untyped-def]
    if code == 5:
        return s3fifo.queue_of(state, entry)
    if code == 6:
        return arc.queue_of(state, entry)
    if code == 10:
        return slru.queue_of(state, entry)
    return 0


@numba.njit(cache=True, _nrt=False)
def policy_on_miss(code, state, block, t):  # type: ignore[no-untyped-def]
    """A key the request is about to cache, before the evictions its misses cause (a ghost
    lookup, as libCacheSim's find does)."""
    if code == 5:
        s3fifo.on_miss(state, block, t)
    elif code == 6:
        arc.on_miss(state, block, t)


@numba.njit(cache=True, _nrt=False)
def policy_pick(code, state):  # type: ignore[no-untyped-def]
    if code == 5:
        return s3fifo.pick(state)
    if code == 6:
        return arc.pick(state)
    if code == 10:
        return slru.pick(state)
    return 0
