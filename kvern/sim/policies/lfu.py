"""LFU: fewest uses first, ties by LRU; optional exponential decay (docs/architecture.md §4).

A use is one request holding the block. Without decay the priority is ``(uses, last
request)``. With ``half_life`` h (in requests) a use at request t weighs ``2^((t - now)/h)``;
since every count decays by the same factor between two moments, comparing
``log2 Σ 2^(t_i / h)`` ranks entries exactly as the decayed counts would, and it never needs
updating between touches (the lazy heap stays valid). Counts restart when an entry re-enters
the cache (the seed's LFU-decay, without a ghost history).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numba

from kvern.sim.policies.base import Policy, PolicyContext, PolicyState


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    rate = s.scalars[0]
    if rate == 0.0:
        score = 1.0 if new else s.entry_f[entry] + 1.0
    else:
        x = t * rate
        if new:
            score = x
        else:
            a = s.entry_f[entry]
            hi, lo = (a, x) if a >= x else (x, a)
            score = hi + math.log2(1.0 + 2.0 ** (lo - hi))
    s.entry_f[entry] = score
    return score, float(t)


class LFU(Policy):
    name = "lfu"
    summary = "least frequently used, ties by LRU"
    code = 2
    defaults: ClassVar[Mapping[str, Any]] = {"half_life": None}

    def state(self, ctx: PolicyContext) -> PolicyState:
        st = PolicyState.empty(ctx.num_entries)
        half_life = self.params["half_life"]
        st.scalars[0] = 0.0 if half_life is None else 1.0 / float(half_life)
        return st
