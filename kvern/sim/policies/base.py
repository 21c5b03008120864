"""The policy interface: a policy only ranks evictable entries (docs/architecture.md §4).

The cache state (a profile's engine) owns the mechanics: which entries exist, which are
evictable leaves, the capacity. A policy answers one question, which evictable entry goes
next, by giving each entry a *priority* whenever the entry is touched; the engine keeps the
evictable entries in a heap ordered by ``(priority, -depth, entry)`` and evicts the smallest.
The tie-breaks of §4 (deeper block first, then the lower id) are therefore part of every
policy's order without any policy having to remember them (SGLang's ``EvictionStrategy`` works
the same way: a policy is only a priority).

A policy is two compiled functions over plain arrays, so that the engines' hot loops stay
compiled (numba) and a policy is still one small file:

* ``touch(state, entry, block, t, occ, new) -> (p1, p2)`` records an access and
  returns the entry's priority until its next touch. The engine calls it for every block a
  request holds, tail of the prompt to its head, after the request ran (request ``t``,
  0-based). ``entry`` is the engine's id (an interned block for ``ideal``, a physical slot for
  ``vllm``), ``block`` the interned block it holds, ``occ`` the index of this access in
  ``stream.block_ids``, ``new`` says the entry entered the cache at this request.
* ``evicted(state, entry, block, p1)`` is called after an entry left the cache with priority
  ``p1`` (greedy-dual ages on it, S3-FIFO and ARC remember the block in a ghost queue); entries
  that merely change hands are not evictions.

Queue policies (S3-FIFO, ARC, SIEVE, SLRU) change their order at eviction time, which a priority
fixed at touch time cannot say. Four optional hooks cover them without the engine knowing any
policy:

* ``on_pop(state, entry, block, t, p1, p2) -> (keep, p1, p2)``: the heap's top is a current
  evictable leaf about to go; ``keep`` puts it back with the new priority instead (a re-insertion,
  a cleared bit, a move between queues). A policy must eventually say no (bits run out).
* ``queue_of(state, entry) -> 0 | 1`` and ``pick(state) -> 0 | 1``: with ``queues = 2`` the
  engine keeps one heap per queue (each still ordered by ``(priority, -depth, entry)``), and
  ``pick`` names the one to evict from next; an empty one falls back to the other.
* ``evict_first = True``: the request's newly inserted entries are touched only after its
  evictions (libCacheSim's order: evict, then insert), unless nothing else is left to evict.
  On a flat stream this makes a policy evict exactly what libCacheSim's does.
* ``on_miss(state, block, t)``: called for each block request ``t`` misses and will cache, before
  its evictions (libCacheSim's ``find``): S3-FIFO and ARC look the block up in their ghosts there,
  so that a ghost hit is known, and the ghost entry gone, before the evictions it causes.

``PolicyState`` holds the arrays, by what they are indexed with; ``Policy.state(ctx)`` builds
them. Priorities never change between touches: that is what lets the engine keep a lazy heap.

Parameters are parsed from ``defaults`` first, then from the user's overrides; an unknown key
fails and lists the valid ones, and non-default values become part of the display name (as
libCacheSim's ``Clock.c`` does).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from kvern.infra.errors import UsageError
from kvern.ingest.stream import BlockStream

Priority = tuple[float, float]
"""Compared lexicographically; the smallest is evicted first."""


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What a policy may know about the trace (read-only arrays of the block stream)."""

    stream: BlockStream
    num_entries: int
    """Size of the per-entry state arrays (unique blocks, or the pool's slots)."""
    capacity: int = 0
    """The cache's capacity in blocks (queue policies size their queues from it; 0 = unknown)."""


class PolicyState(NamedTuple):
    """The arrays a policy's compiled ``touch``/``evicted`` work on (one numba argument)."""

    entry_f: np.ndarray
    """float64[E]: per-entry floats (E = the engine's entries: unique blocks, or the pool's slots)."""
    entry_i: np.ndarray
    """int64[E] (int32 where the policy's values fit: FIFO, cost): per-entry ints."""
    block_f: np.ndarray
    """float64[U] (or [1]): per-block constants, indexed by interned block id."""
    access_i: np.ndarray
    """int64[N] (int32 for Belady's next uses, or [1]): per-access constants, indexed by position
    in ``stream.block_ids``."""
    scalars: np.ndarray
    """float64[16]: parameters and running values."""
    entry_m: np.ndarray
    """int64[E, 2] (or [1, 2]): more per-entry ints (a queue, a bit, a round)."""
    block_i: np.ndarray
    """int64[U] (or [1]): per-block ints (a ghost queue's position)."""
    log_i: np.ndarray
    """int64[2, L] (or [2, 1]): two FIFO logs (ghost queues), ``log_ctr`` their head/tail/count."""
    log_ctr: np.ndarray
    """int64[2, 3]"""
    table: np.ndarray
    """float64[K] (or [1]): learned tables and per-request facts (``followup``)."""

    @classmethod
    def empty(cls, num_entries: int) -> PolicyState:
        return cls(np.zeros(num_entries), np.zeros(num_entries, dtype=np.int64), np.zeros(1),
                   np.zeros(1, dtype=np.int64), np.zeros(16), np.zeros((1, 2), dtype=np.int64),
                   np.zeros(1, dtype=np.int64), np.zeros((2, 1), dtype=np.int64),
                   np.zeros((2, 3), dtype=np.int64), np.zeros(1))


class Policy(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    code: ClassVar[int]
    """Row of the compiled dispatch table (``kvern.sim.policies.kernels``)."""
    defaults: ClassVar[Mapping[str, Any]] = {}
    offline: ClassVar[bool] = False
    """True for policies that read the future (Belady): a reference, not a deployable choice."""
    queues: ClassVar[int] = 1
    """Heaps the engine keeps for this policy (2: ``queue_of``/``pick`` choose among them)."""
    evict_first: ClassVar[bool] = False
    """Touch the request's new entries after its evictions (libCacheSim's evict-then-insert)."""
    requeue_in_place: ClassVar[bool] = False
    """True when ``on_pop`` keeps entries in their queue with a key a little above the old one
    (followup's aged keys): the engines then replace the heap's top in one pass down, which stops
    near the top, instead of a pop and a push (followup on the Mooncake benchmark stream: 1.2 ->
    0.86 s CPU under ``ideal``, 1.9 -> 1.4 s under ``vllm``). Re-insertions at the back of a queue
    (S3-FIFO, SIEVE) sink to the bottom, which a pop and a push do with fewer comparisons."""
    second_key: ClassVar[bool] = True
    """False when ``touch`` and ``on_pop`` always return ``p2 = 0.0``: the engines then keep no
    second key per entry and per heap row (8 + 8 bytes less)."""

    def __init__(self, params: Mapping[str, Any] | None = None,
                 run_defaults: Mapping[str, Any] | None = None) -> None:
        """``run_defaults`` replace class defaults the run knows better (e.g. the cost policy's
        ``attn_ratio`` from the model's geometry); unlike ``params`` they stay out of the name."""
        self._base = parse_params(self.name, self.defaults, run_defaults or {})
        self.params: dict[str, Any] = parse_params(self.name, self._base, params or {})

    @property
    def display_name(self) -> str:
        changed = {k: v for k, v in self.params.items() if v != self._base[k]}
        if not changed:
            return self.name
        return f"{self.name}({','.join(f'{k}={v}' for k, v in sorted(changed.items()))})"

    @abstractmethod
    def state(self, ctx: PolicyContext) -> PolicyState:
        """Fresh state arrays for a simulation over ``ctx.num_entries`` entries."""


def parse_params(policy: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults, then overrides; unknown keys fail naming the valid ones; values are positive numbers."""
    out = dict(defaults)
    for key, value in overrides.items():
        if key not in defaults:
            valid = ", ".join(sorted(defaults)) or "none"
            raise UsageError(f"policy {policy}: unknown parameter {key!r} (valid: {valid})")
        out[key] = None if value is None or value == "none" else _number(policy, key, value)
    return out


def _number(policy: str, key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"policy {policy}: parameter {key} must be a number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise UsageError(f"policy {policy}: parameter {key} must be a positive number, got {value!r}")
    return int(number) if number.is_integer() else number
