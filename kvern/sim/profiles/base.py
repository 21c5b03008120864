"""The engine-profile interface (docs/architecture.md §6): a profile and its cache engine.

A profile fixes the rules that make a simulation predict one engine: block size and which
blocks are cacheable, the last-token rule, when and at what granularity it evicts, how a
running request holds memory. The policy (which entry goes next) stays separate.

Each profile builds a ``CacheEngine`` (``kvern.sim.engine``): its cache as an object, over one model's
``BlockStream``, that is fed requests in arrival order (``serve``, one request or a chunk at
a time: the compiled kernels loop over the chunk), queried without being touched
(``cached_prefix``: how much of a request's prompt it holds now) and read
(``cached_blocks``, ``used``). A batch run (``Profile.simulate``) is a loop over the same
engine in chunks, so a router asking one replica's cache, a live prediction and ``kvern
replay`` all run one implementation.

To add a profile, in its own module::

    @register
    class MyEngine(Profile):
        name = "my-engine"
        summary = "one line for --help"
        policies = frozenset({"lru"})          # the policies it can honour; None = all

        def engine(self, stream, policy, capacity_blocks) -> CacheEngine:
            return _MyCache(stream, policy, capacity_blocks)

and import that module in ``kvern/sim/profiles/__init__.py``. A compiled engine takes
``policy.state(PolicyContext(stream, n_entries))`` and calls
``kvern.sim.policies.kernels.policy_touch(policy.code, state, …)`` in its loop. Either way
the engine owns the entries, the leaves and the capacity, and evicts the smallest
``(priority, -depth, id)``. It must be deterministic (same input, same output), never print,
and write ``cached_tokens`` and ``unschedulable`` of every request it serves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from kvern.ingest.stream import BlockStream
from kvern.sim.engine import CacheEngine
from kvern.sim.policies import Policy
from kvern.sim.result import SimResult

Advance = Callable[[float], None]

PROFILES: dict[str, type[Profile]] = {}
"""Name -> profile class; filled by ``@register``."""


class Profile(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    policies: ClassVar[frozenset[str] | None] = None
    """Policy names this profile can run; None = every policy."""
    last_token_rule: ClassVar[bool] = True
    """The engine recomputes the last prompt token (cached ≤ prompt_tokens − 1)."""
    uses_tokens: ClassVar[bool] = False
    """The engine reads the stream's token ids where the trace has them (else only blocks):
    only then are they read from the trace (``block_streams(trace, tokens=...)``)."""

    @abstractmethod
    def engine(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> CacheEngine:
        """A fresh, empty cache of ``capacity_blocks`` over ``stream``."""

    def simulate(self, stream: BlockStream, policy: Policy, capacity_blocks: int,
                 advance: Advance | None = None) -> SimResult:
        """Run the requests of ``stream`` in order through a fresh cache of ``capacity_blocks``."""
        engine = self.engine(stream, policy, int(capacity_blocks))
        n = stream.num_requests
        for r0 in range(0, n, CHUNK):
            r1 = min(n, r0 + CHUNK)
            engine.serve(np.arange(r0, r1, dtype=np.int64))
            if advance is not None:
                advance(r1 - r0)
        return engine.result()


def register(cls: type[Profile]) -> type[Profile]:
    assert cls.name not in PROFILES, f"profile {cls.name!r} registered twice"
    PROFILES[cls.name] = cls
    return cls


CHUNK = 4096
"""Requests per call of ``CacheEngine.serve`` in a batch run (progress is reported between calls)."""
