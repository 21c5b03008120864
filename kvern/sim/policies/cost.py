"""Cost-aware greedy-dual (GD-Frequency): keep deep, hot, expensive prefixes (docs/architecture.md §4).

Priority ``H = L + uses × recompute_cost(block)``, lowest first; ``L`` is the priority of the
last evicted entry, so entries that are not touched age relative to new ones. Every block
takes one slot, so greedy-dual's division by size drops out.

``recompute_cost`` is the prefill FLOPs of the block's tokens at their positions (§5):
``Σ_p (2·params + 4·layers·hidden·p)``, here divided by ``2·params`` so that only the ratio
``attn_ratio = 4·layers·hidden / (2·params)`` matters: ``cost = Σ_p (1 + attn_ratio·p)``. The
run sets ``attn_ratio`` from the model's geometry when it is known; the default is
Llama-3.1-8B's (4·32·4096 / (2·8e9) ≈ 3.3e-5), so a block at position 100k costs ~4× one at 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numba
import numpy as np

from kvern.sim.policies.base import Policy, PolicyContext, PolicyState

LLAMA_8B_ATTN_RATIO = 4 * 32 * 4096 / (2 * 8.0e9)


def block_costs(depth: np.ndarray, block_tokens: np.ndarray, block_size: int,
                attn_ratio: float) -> np.ndarray:
    """Recompute cost of each unique block, in units of ``2·params`` FLOPs."""
    n = block_tokens.astype(np.float64)
    start = depth.astype(np.float64) * block_size
    return n + attn_ratio * (n * start + n * (n - 1) / 2.0)


@numba.njit(cache=True, inline="always")
def touch(s, entry, block, t, occ, new):  # type: ignore[no-untyped-def]
    uses = 1 if new else s.entry_i[entry] + 1
    s.entry_i[entry] = uses
    return s.scalars[0] + uses * s.block_f[block], 0.0


@numba.njit(cache=True, inline="always")
def evicted(s, entry, block, p1):  # type: ignore[no-untyped-def]
    s.scalars[0] = p1


class Cost(Policy):
    name = "cost"
    summary = "greedy-dual, recompute cost grows with depth"
    code = 3
    second_key = False
    defaults: ClassVar[Mapping[str, Any]] = {"attn_ratio": LLAMA_8B_ATTN_RATIO}

    def state(self, ctx: PolicyContext) -> PolicyState:
        st = ctx.stream
        costs = block_costs(st.depth, st.block_tokens, st.block_size, float(self.params["attn_ratio"]))
        # entry_i: uses since the entry entered (at most one per request: int32)
        return PolicyState.empty(1)._replace(entry_i=np.zeros(ctx.num_entries, np.int32),
                                             block_f=np.ascontiguousarray(costs, dtype=np.float64))
