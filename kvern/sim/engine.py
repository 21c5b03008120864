"""The steppable cache: one profile's cache as an object (docs/architecture.md §6).

A ``CacheEngine`` holds one profile's cache under one policy and capacity, over one model's
``BlockStream``. It is fed requests in arrival order (``serve``: one request, or a chunk the
compiled kernels loop over), queried without being touched (``cached_prefix``), and read
(``cached_blocks``, ``used``). A batch run, a router asking a replica, and a live prediction
all drive the same object. Profiles (``kvern.sim.profiles``) build them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from kvern.ingest.stream import BlockStream
from kvern.sim.policies import Policy
from kvern.sim.result import SimResult


class CacheEngine(ABC):
    """One profile's cache, one policy, one capacity, over one model's block stream."""

    profile: ClassVar[str]

    def __init__(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> None:
        assert capacity_blocks >= 1, "capacity must be at least one block"
        self.stream = stream
        self.policy = policy
        self.capacity_blocks = int(capacity_blocks)
        self.cached_tokens = np.zeros(stream.num_requests, dtype=np.int64)
        """int64[R]: tokens served from the cache at each request's arrival (0 if not served)."""
        self.unschedulable = np.zeros(stream.num_requests, dtype=np.uint8)
        """uint8[R]: 1 where the request needed more blocks than the pool has (a full miss)."""

    @abstractmethod
    def serve(self, requests: np.ndarray) -> None:
        """Run ``requests`` (int64 indices into the stream, ascending) through the cache, in order."""

    @abstractmethod
    def cached_prefix(self, request: int) -> int:
        """Tokens of request ``request``'s prompt that the cache holds now as a prefix, in whole
        blocks (pages), before any last-token rule; nothing changes (no access is recorded)."""

    def _prefix_tokens(self, request: int, found_blocks: int) -> int:
        """``found_blocks`` leading blocks of ``request`` in tokens (a found partial tail counts whole)."""
        s = self.stream
        return min(found_blocks * s.block_size, int(s.prompt_tokens[request]))

    @abstractmethod
    def cached_blocks(self) -> np.ndarray:
        """int64[]: the interned ids of the blocks the cache holds now, ascending, once each."""

    @property
    @abstractmethod
    def used(self) -> int:
        """Entries in use now, in the engine's own unit (blocks, pool slots, or pages)."""

    @property
    @abstractmethod
    def evicted_blocks(self) -> int:
        """Cache entries dropped to make room so far."""

    def result(self) -> SimResult:
        s = self.stream
        return SimResult(model=s.model, policy=self.policy.name, policy_label=self.policy.display_name,
                         profile=self.profile, capacity_blocks=self.capacity_blocks, block_size=s.block_size,
                         prompt_tokens=s.prompt_tokens.astype(np.int64), cached_tokens=self.cached_tokens,
                         unschedulable=self.unschedulable.astype(bool), evicted_blocks=self.evicted_blocks)
