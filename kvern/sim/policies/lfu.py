"""LFU: fewest uses first, ties by LRU; optional exponential decay (DESIGN.md §4).

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

from kvern.sim.policies.base import Policy, PolicyContext, Priority


class LFU(Policy):
    name = "lfu"
    summary = "least frequently used, ties by LRU"
    defaults: ClassVar[Mapping[str, Any]] = {"half_life": None}

    def bind(self, ctx: PolicyContext) -> None:
        self._score = [0.0] * ctx.num_entries
        half_life = self.params["half_life"]
        self._rate = None if half_life is None else 1.0 / float(half_life)

    def touch(self, entry: int, block: int, t: int, occ: int, new: bool) -> Priority:
        if self._rate is None:
            score = 1.0 if new else self._score[entry] + 1.0
        else:
            x = t * self._rate
            score = x if new else _log2_add(self._score[entry], x)
        self._score[entry] = score
        return (score, t)


def _log2_add(a: float, b: float) -> float:
    """log2(2^a + 2^b) without overflow."""
    hi, lo = (a, b) if a >= b else (b, a)
    return hi + math.log2(1.0 + 2.0 ** (lo - hi))
