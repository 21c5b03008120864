"""FIFO: oldest insertion first; a hit does not refresh an entry (docs/architecture.md §4).

Priority = the request index at which the entry entered the cache. All blocks a request
inserts share it, so among them the deepest goes first (the engine's tie-break), which keeps
the cache prefix-closed without a special rule.
"""

from __future__ import annotations

import numba
import numpy as np

from kvern.sim.policies.base import Policy, PolicyContext, PolicyState


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    if new:
        s.entry_i[entry] = t
    return float(s.entry_i[entry]), 0.0


class FIFO(Policy):
    name = "fifo"
    summary = "first in, first out"
    code = 1
    second_key = False

    def state(self, ctx: PolicyContext) -> PolicyState:  # entry_i: the request it entered at (int32)
        return PolicyState.empty(1)._replace(entry_i=np.zeros(ctx.num_entries, np.int32))
