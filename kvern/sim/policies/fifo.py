"""FIFO: oldest insertion first; a hit does not refresh an entry (DESIGN.md §4).

Priority = the request index at which the entry entered the cache. All blocks a request
inserts share it, so among them the deepest goes first (the engine's tie-break), which keeps
the cache prefix-closed without a special rule.
"""

from __future__ import annotations

import numpy as np

from kvern.sim.policies.base import Policy, PolicyContext, Priority


class FIFO(Policy):
    name = "fifo"
    summary = "first in, first out"

    def bind(self, ctx: PolicyContext) -> None:
        self._inserted = np.zeros(ctx.num_entries, dtype=np.int64).tolist()

    def touch(self, entry: int, block: int, t: int, occ: int, new: bool) -> Priority:
        if new:
            self._inserted[entry] = t
        return (self._inserted[entry], 0)
