"""``ideal``: the pure prefix-reuse model of docs/architecture.md §3, at the trace's block granularity.

No last-token rule, no partial-slot effects: a request's cached prefix is the longest run of
its leading blocks present in the cache, and a fully present prompt is a full hit (its
partial tail block included, since equal keys mean equal whole prefixes) — exactly
``kvern.sim.bounds.infinite_cache_hits`` when nothing is evicted. After the lookup the
request's blocks are all admitted (hits touched, misses inserted; a request longer than the
capacity keeps only its leading ``capacity`` blocks), then the policy evicts leaves until at
most ``capacity`` blocks remain. The request's own blocks are candidates like any other.

Entries are the interned block ids; all state is flat arrays and the loop is compiled. LRU
runs on ``kvern.sim.kernels`` (a recency list, O(1) per block) with the same results.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from kvern.ingest.stream import BlockStream
from kvern.sim import heap
from kvern.sim.engine import CacheEngine
from kvern.sim.heap import ID, P1, P2, VERSION
from kvern.sim.kernels import LRUEngine
from kvern.sim.policies import Policy, PolicyContext
from kvern.sim.policies.kernels import (
    policy_evicted,
    policy_on_miss,
    policy_on_pop,
    policy_pick,
    policy_queue,
    policy_touch,
)
from kvern.sim.profiles.base import Profile, register
from kvern.sim.prompts import prompts_of

# counters of an IdealCache, by name (HEAP_LEN: queue 0's heap, HEAP_LEN1: queue 1's;
# LOGGED: ids in the eviction log)
HEAP_LEN, SIZE, EVICTED, ROUNDS, HEAP_LEN1, LOGGED = range(6)


@register
class Ideal(Profile):
    name = "ideal"
    summary = "pure prefix reuse: block-level, no last-token rule"
    last_token_rule = False
    lru_kernel: bool = True
    """LRU runs on ``kvern.sim.kernels`` (O(1) per block, same results); tests turn it off to
    check that kernel against the policy-generic engine."""

    def engine(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> CacheEngine:
        if self.lru_kernel and policy.name == "lru":
            return IdealLRU(stream, policy, capacity_blocks, profile=self.name)
        return IdealHeap(stream, policy, capacity_blocks, profile=self.name)


class IdealLRU(LRUEngine):
    """The ideal model under LRU on the recency-list kernel (no last-token rule)."""

    def __init__(self, stream: BlockStream, policy: Policy, capacity_blocks: int, *, profile: str) -> None:
        assert policy.name == "lru", "the recency-list kernel runs LRU only"
        super().__init__(stream, policy, capacity_blocks, last_token_rule=False)
        self.profile = profile


class IdealCache(NamedTuple):
    """The policy-generic engine's state over the unique blocks (U) of a stream."""

    in_cache: np.ndarray
    """uint8[U]"""
    children: np.ndarray
    """int32[U]: cached blocks whose parent this block is (0 = a leaf)."""
    version: np.ndarray
    """int64[U]: bumped at every change; a heap row with an older version is stale."""
    stamp: np.ndarray
    """int64[U]: compaction round that last kept this block's row (one row per block)."""
    priority: np.ndarray
    """float64[U, 2]: the policy's priority from the block's last touch."""
    heap: np.ndarray
    """float64[Q, H, 5]: the evictable leaves (``kvern.sim.heap``), one heap per policy queue."""
    counters: np.ndarray
    """int64[6]: HEAP_LEN, SIZE, EVICTED, ROUNDS, HEAP_LEN1, LOGGED."""
    log: np.ndarray
    """int64[L]: the ids evicted since the last ``take_evicted`` (empty: the log is off)."""


class IdealHeap(CacheEngine):
    """Any policy: evictable leaves in a lazy heap ordered by the policy's priority."""

    _log_state = "cache"
    _log_slot = LOGGED

    def __init__(self, stream: BlockStream, policy: Policy, capacity_blocks: int, *, profile: str) -> None:
        super().__init__(stream, policy, capacity_blocks)
        self.profile = profile
        u = stream.num_unique
        longest = stream.longest_request
        self.state = policy.state(PolicyContext(stream, u, self.capacity_blocks))
        self.prompts = prompts_of(stream)
        self.cache = IdealCache(np.zeros(u, np.uint8), np.zeros(u, np.int32), np.zeros(u, np.int64),
                                np.zeros(u, np.int64), np.zeros((u, 2), np.float64),
                                heap.new_heaps(policy.queues, min(u, self.capacity_blocks + longest)),
                                np.zeros(6, np.int64), np.zeros(0, np.int64))

    def serve(self, requests: np.ndarray) -> None:
        self._log_room(requests)
        self._call(_serve, requests, self.policy.code, self.policy.evict_first, self.state, self.prompts,
                   self.capacity_blocks, self.cache, self.cached_tokens)

    def cached_prefix(self, request: int) -> int:
        return self._prefix_tokens(request, _leading(self.stream.blocks_of(request), self.cache.in_cache))

    def cached_blocks(self) -> np.ndarray:
        return np.flatnonzero(self.cache.in_cache)

    @property
    def used(self) -> int:
        return int(self.cache.counters[SIZE])

    @property
    def evicted_blocks(self) -> int:
        return int(self.cache.counters[EVICTED])


@numba.njit(cache=True)
def _leading(blocks, present):  # type: ignore[no-untyped-def]
    k = 0
    while k < len(blocks) and present[blocks[k]]:
        k += 1
    return k


@numba.njit(cache=True, inline="always")
def _len_at(q):  # type: ignore[no-untyped-def]
    return HEAP_LEN if q == 0 else HEAP_LEN1


@numba.njit(cache=True)
def _compact(c, q, round_):  # type: ignore[no-untyped-def]
    """Keep one row per currently evictable leaf whose row is current; re-heapify."""
    h = c.heap[q]
    m = 0
    for i in range(c.counters[_len_at(q)]):
        b = int(h[i, ID])
        if (h[i, VERSION] == c.version[b] and c.in_cache[b] and c.children[b] == 0
                and c.stamp[b] != round_):
            c.stamp[b] = round_
            for col in range(heap.ROW):
                h[m, col] = h[i, col]
            m += 1
    heap.heapify(h, m)
    c.counters[_len_at(q)] = m


@numba.njit(cache=True, inline="always")
def _push_leaf(code, state, c, b, depth):  # type: ignore[no-untyped-def]
    q = policy_queue(code, state, b)
    at = _len_at(q)
    if c.counters[at] == c.heap.shape[1]:
        c.counters[ROUNDS] += 1
        _compact(c, q, c.counters[ROUNDS])
    c.counters[at] = heap.push(c.heap[q], c.counters[at], c.priority[b, 0], c.priority[b, 1],
                               -depth[b], b, c.version[b])


@numba.njit(cache=True, inline="always")
def _current(c, h, i):  # type: ignore[no-untyped-def]
    b = int(h[i, ID])
    return h[i, VERSION] == c.version[b] and c.children[b] == 0 and c.in_cache[b] != 0


@numba.njit(cache=True, inline="always")
def _valid_top(c, q):  # type: ignore[no-untyped-def]
    """Drop queue q's stale top rows; True when a current evictable leaf is left on top."""
    at = _len_at(q)
    h = c.heap[q]
    while c.counters[at] > 0 and not _current(c, h, 0):
        c.counters[at] = heap.pop(h, c.counters[at])
    return c.counters[at] > 0


@numba.njit(cache=True, inline="always")
def _touch(code, state, p, c, r, lo, j, k):  # type: ignore[no-untyped-def]
    b = p.ids[lo + j]
    p1, p2 = policy_touch(code, state, b, b, r, lo + j, j >= k)
    c.priority[b, 0] = p1
    c.priority[b, 1] = p2
    c.version[b] += 1
    if c.children[b] == 0:
        _push_leaf(code, state, c, b, p.depth)


@numba.njit(cache=True, _nrt=False)  # no reference counts, nothing allocated: kvern.sim.policies.kernels
def _serve(requests, code, evict_first, state, p, cap, c, cached):  # type: ignore[no-untyped-def]
    nq = c.heap.shape[0]
    for r in requests:
        lo, hi = p.offsets[r], p.offsets[r + 1]
        n = hi - lo
        k = 0
        while k < n and c.in_cache[p.ids[lo + k]]:
            k += 1
        cached[r] = p.prompt_tokens[r] if k == n else k * p.block_size
        m = n if n < cap else cap  # k <= cache size <= cap, so m >= k
        for j in range(k, m):  # insert the misses, parents first
            b = p.ids[lo + j]
            policy_on_miss(code, state, b, r)
            c.in_cache[b] = 1
            c.counters[SIZE] += 1
            if p.parent[b] >= 0:
                c.children[p.parent[b]] += 1
        # touch tail -> head; an evict-first policy sees its misses only after the evictions
        # (libCacheSim's order: evict, then insert), unless nothing else is left to evict
        deferred = evict_first and m > k
        for j in range(m - 1, -1, -1):
            if not (deferred and j >= k):
                _touch(code, state, p, c, r, lo, j, k)
        while c.counters[SIZE] > cap:
            q = policy_pick(code, state) if nq > 1 else 0
            if not _valid_top(c, q):
                q = 1 - q if nq > 1 else q
                if not _valid_top(c, q):
                    assert deferred, "no evictable leaf although the cache is over capacity"
                    deferred = False
                    for j in range(m - 1, k - 1, -1):
                        _touch(code, state, p, c, r, lo, j, k)
                    continue
            h = c.heap[q]
            b = int(h[0, ID])
            p1 = h[0, P1]
            p2 = h[0, P2]
            c.counters[_len_at(q)] = heap.pop(h, c.counters[_len_at(q)])
            keep, n1, n2 = policy_on_pop(code, state, b, b, r, p1, p2)
            if keep:  # the policy moved it (re-insertion, a cleared bit): back in with its new priority
                c.priority[b, 0] = n1
                c.priority[b, 1] = n2
                c.version[b] += 1
                _push_leaf(code, state, c, b, p.depth)
                continue
            c.in_cache[b] = 0
            c.counters[SIZE] -= 1
            c.counters[EVICTED] += 1
            if len(c.log) > 0:
                c.log[c.counters[LOGGED]] = b
                c.counters[LOGGED] += 1
            c.version[b] += 1
            policy_evicted(code, state, b, b, p1)
            parent = p.parent[b]
            if parent >= 0:
                c.children[parent] -= 1
                if c.children[parent] == 0:
                    _push_leaf(code, state, c, parent, p.depth)
        if deferred:
            for j in range(m - 1, k - 1, -1):
                _touch(code, state, p, c, r, lo, j, k)
