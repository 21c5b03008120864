"""The steppable cache: one profile's cache as an object (docs/architecture.md §6).

A ``CacheEngine`` holds one profile's cache under one policy and capacity, over one model's
``BlockStream``. It is fed requests in arrival order (``serve``: one request, or a chunk the
compiled kernels loop over), queried without being touched (``cached_prefix``), and read
(``cached_blocks``, ``used``). A batch run, a router asking a replica, and a live prediction
all drive the same object. Profiles (``kvern.sim.profiles``) build them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from kvern.ingest.stream import BlockStream
from kvern.sim.policies import Policy
from kvern.sim.result import SimResult


@dataclass(frozen=True, slots=True)
class Const:
    """An argument of an engine's kernel that is compiled in as a constant (``CacheEngine._call``)."""

    value: int


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

    # -- eviction log (offload tiers, docs/cluster.md) -----------------------------------------
    _log_state: ClassVar[str | None] = None
    """Attribute holding the compiled state NamedTuple with a ``log`` field (int64, empty = off)."""
    _log_slot: ClassVar[int] = -1
    """Index in that state's ``counters`` of the number of ids logged."""

    def enable_eviction_log(self) -> None:
        """From now on, record the id of every block the cache drops (vllm: every key whose last
        cached copy is dropped), in eviction order, for ``take_evicted``. Off by default: a batch
        run pays nothing for it."""
        state = self._log_target()
        longest = max(self.stream.longest_request, 1)
        setattr(self, self._log_state or "", state._replace(log=np.zeros(longest, np.int64)))

    def take_evicted(self) -> np.ndarray:
        """int64[]: the ids dropped since the last call, in eviction order (the log is cleared)."""
        state = self._log_target()
        n = int(state.counters[self._log_slot])
        out = state.log[:n].copy()
        state.counters[self._log_slot] = 0
        return out

    def _call(self, fn, requests: np.ndarray, *args) -> None:  # type: ignore[no-untyped-def]
        """``fn(requests, *args)``, with ``fn``'s compiled version resolved once per engine.

        Numba's dispatcher types every argument on every call, which for the engines' state
        NamedTuples costs ~0.3 ms: more than serving one request. An engine's arguments keep
        their types for its whole life, so it looks the entry point up once. A ``Const``
        argument is compiled in as a constant (a numba literal): the kernel is specialised to
        its value, and branches on other values are dropped (a policy's hooks: see
        ``kvern.sim.policies.kernels``).
        """
        if requests.dtype != np.int64 or requests.ndim != 1 or not requests.flags.c_contiguous:
            requests = np.ascontiguousarray(requests, dtype=np.int64).reshape(-1)
        values = tuple(a.value if isinstance(a, Const) else a for a in args)
        entry = self.__dict__.get("_entry")
        if entry is None:
            import numba

            sig = tuple(numba.types.literal(a.value) if isinstance(a, Const) else numba.typeof(a)
                        for a in (requests, *args))
            entry = self.__dict__["_entry"] = fn.compile(sig)
        entry(requests, *values)

    def _log_target(self):  # type: ignore[no-untyped-def]
        if self._log_state is None:
            raise NotImplementedError(f"profile {self.profile} ({type(self).__name__}) keeps no eviction log")
        return getattr(self, self._log_state)

    def _log_room(self, requests: np.ndarray) -> None:
        """Grow an enabled log so that ``requests`` fit: a request evicts at most its own blocks."""
        if self._log_state is None:
            return
        state = getattr(self, self._log_state)
        if len(state.log) == 0:
            return
        offsets = self.stream.req_offsets
        need = int(state.counters[self._log_slot]) + int((offsets[requests + 1] - offsets[requests]).sum())
        if need > len(state.log):
            log = np.zeros(2 * need, np.int64)
            log[: len(state.log)] = state.log
            setattr(self, self._log_state, state._replace(log=log))

    def result(self) -> SimResult:
        s = self.stream
        return SimResult(model=s.model, policy=self.policy.name, policy_label=self.policy.display_name,
                         profile=self.profile, capacity_blocks=self.capacity_blocks, block_size=s.block_size,
                         prompt_tokens=s.prompt_tokens.astype(np.int64), cached_tokens=self.cached_tokens,
                         unschedulable=self.unschedulable.astype(bool), evicted_blocks=self.evicted_blocks)
