"""The policy interface: a policy only ranks evictable entries (DESIGN.md §4, STYLE.md §3).

The cache state (a profile's engine) owns the mechanics: which entries exist, which are
evictable leaves, the capacity. A policy answers one question, which evictable entry goes
next, by giving each entry a *priority* whenever the entry is touched; the engine keeps the
evictable entries in a heap ordered by ``(priority, -depth, entry)`` and evicts the smallest.
The tie-breaks of §4 (deeper block first, then the lower id) are therefore part of every
policy's order without any policy having to remember them.

Contract of the hooks, as libCacheSim states its own (``cache/eviction/LRU.c``):

* ``bind(ctx)`` is called once per simulation, before any other hook; it sizes the
  per-entry state arrays (``ctx.num_entries``).
* ``touch(entry, block, t, occ, new)`` is called for every block a request holds, from the
  tail of the prompt to its head, after the request ran (request ``t``, 0-based). ``entry``
  is the engine's id (an interned block for ``ideal``, a physical slot for ``vllm``), ``block``
  the interned block id it holds, ``occ`` the index of this access in ``stream.block_ids``
  (Belady reads the next use from it) and ``new`` says the entry entered the cache at this
  request. It returns the entry's new priority, a tuple compared lexicographically.
* ``on_evict(entry, priority)`` is called after an entry was evicted (greedy-dual ages on it);
  it is not called for entries that merely change hands.

Priorities never change between touches: that is what lets the engine keep a lazy heap.
Parameters are parsed from ``defaults`` first, then from the user's overrides; an unknown
key fails and lists the valid ones, and non-default values become part of the display name
(as libCacheSim's ``Clock.c`` does).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from kvern.errors import UsageError
from kvern.sim.stream import BlockStream

Priority = tuple[float, float]
"""Compared lexicographically; the smallest is evicted first."""


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What a policy may know about the trace (read-only arrays of the block stream)."""

    stream: BlockStream
    num_entries: int
    """Size of the per-entry state arrays (unique blocks, or the pool's slots)."""


class Policy(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = {}
    offline: ClassVar[bool] = False
    """True for policies that read the future (Belady): not a deployable choice."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = parse_params(self.name, self.defaults, params or {})

    @property
    def display_name(self) -> str:
        changed = {k: v for k, v in self.params.items() if v != self.defaults[k]}
        if not changed:
            return self.name
        return f"{self.name}({','.join(f'{k}={v}' for k, v in sorted(changed.items()))})"

    # -- developer-facing ---------------------------------------------------------------
    @abstractmethod
    def bind(self, ctx: PolicyContext) -> None:
        """Reset all state for a new simulation over ``ctx.num_entries`` entries."""

    @abstractmethod
    def touch(self, entry: int, block: int, t: int, occ: int, new: bool) -> Priority:
        """Record an access; return the entry's priority until its next touch."""

    def on_evict(self, entry: int, priority: Priority) -> None:  # noqa: B027 - optional hook
        """Called after ``entry`` left the cache with ``priority``."""


def parse_params(policy: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults, then overrides; unknown keys fail naming the valid ones; types follow defaults."""
    out = dict(defaults)
    for key, value in overrides.items():
        if key not in defaults:
            valid = ", ".join(sorted(defaults)) or "none"
            raise UsageError(f"policy {policy}: unknown parameter {key!r} (valid: {valid})")
        if value is None or defaults[key] is None:
            out[key] = None if value is None else _number(policy, key, value)
        else:
            out[key] = _number(policy, key, value)
    return out


def _number(policy: str, key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"policy {policy}: parameter {key} must be a number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise UsageError(f"policy {policy}: parameter {key} must be a positive number, got {value!r}")
    return int(number) if number.is_integer() else number
