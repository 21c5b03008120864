"""SIEVE (Zhang et al., NSDI 2024): a FIFO queue with a visited bit and a hand (docs/architecture.md §4).

A hit sets the entry's bit; nothing moves. To evict, the hand walks from the oldest entry towards
the newest: a set bit is cleared and the entry stays where it is, the first clear one goes; past
the newest entry the hand starts again at the oldest. As libCacheSim's ``Sieve.c``.

Here the hand's walk is a priority ``(pass, insertion order)``: an entry the hand spares moves to
the next pass, so the heap pops entries in exactly the hand's order. The pass ends when no entry of
it is left (counted per pass), which is when the hand would wrap. Prefix-closed variant: the hand
only sees leaves; an inner entry it passed over keeps its old pass and is looked at as soon as it
becomes a leaf (as if the hand had stopped there). New entries join after the evictions of their
request (``evict_first``), as libCacheSim inserts after evicting.
"""

from __future__ import annotations

import numba
import numpy as np

from kvern.sim.policies.base import Policy, PolicyContext, PolicyState

VISITED, PASS = 0, 1
# scalars
CUR, SEQ, N_CUR, N_NEXT = 0, 1, 2, 3


@numba.njit(cache=True, inline="always")
def _wrap_if_done(s):  # type: ignore[no-untyped-def]
    if s.scalars[N_CUR] <= 0.0:
        s.scalars[CUR] += 1.0
        s.scalars[N_CUR] = s.scalars[N_NEXT]
        s.scalars[N_NEXT] = 0.0


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    if new:
        s.entry_m[entry, VISITED] = 0
        s.entry_m[entry, PASS] = int(s.scalars[CUR])
        s.entry_i[entry] = int(s.scalars[SEQ])
        s.scalars[SEQ] += 1.0
        s.scalars[N_CUR] += 1.0
    else:
        s.entry_m[entry, VISITED] = 1
    return float(s.entry_m[entry, PASS]), float(s.entry_i[entry])


@numba.njit(cache=True, inline="always")
def on_pop(s, entry, block, t, p1, p2):  # type: ignore[no-untyped-def]
    if s.entry_m[entry, PASS] > s.scalars[CUR]:  # the hand wrapped while inner entries held its pass
        s.scalars[CUR] += 1.0
        s.scalars[N_CUR] = s.scalars[N_NEXT]
        s.scalars[N_NEXT] = 0.0
    if s.entry_m[entry, VISITED] == 0:
        return False, p1, p2
    s.entry_m[entry, VISITED] = 0
    if s.entry_m[entry, PASS] == s.scalars[CUR]:
        s.scalars[N_CUR] -= 1.0
    s.entry_m[entry, PASS] = int(s.scalars[CUR]) + 1
    s.scalars[N_NEXT] += 1.0
    _wrap_if_done(s)
    return True, float(s.entry_m[entry, PASS]), p2


@numba.njit(cache=True, inline="always")
def evicted(s, entry, block, p1):  # type: ignore[no-untyped-def]
    r = s.entry_m[entry, PASS]
    if r == s.scalars[CUR]:
        s.scalars[N_CUR] -= 1.0
        _wrap_if_done(s)
    elif r == s.scalars[CUR] + 1.0:
        s.scalars[N_NEXT] -= 1.0


class Sieve(Policy):
    name = "sieve"
    summary = "SIEVE: FIFO with a visited bit and a moving hand"
    code = 7
    evict_first = True

    def state(self, ctx: PolicyContext) -> PolicyState:
        return PolicyState.empty(ctx.num_entries)._replace(entry_m=np.zeros((ctx.num_entries, 2), np.int64))
