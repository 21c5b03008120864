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
from kvern.sim.engine import CacheEngine, Const
from kvern.sim.heap import Heap
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

# counters of an IdealCache, by name (ROUNDS: heap compactions; LOGGED: ids in the eviction log)
SIZE, EVICTED, ROUNDS, LOGGED = range(4)


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

    cached: np.ndarray
    """int32[U]: 0 = not cached, else 1 + the cached blocks whose parent this block is (1 = a leaf)."""
    version: np.ndarray
    """int32[U]: bumped when the block's row is pushed and when it leaves; an older row is stale."""
    p1: np.ndarray
    """float64[U]: the policy's first key from the block's last touch."""
    p2: np.ndarray
    """float64[U], or float64[1] when the policy's second key is always 0 (``Policy.second_key``)."""
    heap: Heap
    """The evictable leaves (``kvern.sim.heap``), one heap per policy queue."""
    counters: np.ndarray
    """int64[4]: SIZE, EVICTED, ROUNDS, LOGGED."""
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
        two = policy.second_key
        self.cache = IdealCache(np.zeros(u, np.int32), np.zeros(u, np.int32), np.zeros(u, np.float64),
                                np.zeros(u if two else 1, np.float64),
                                heap.new_heap(policy.queues, min(u, self.capacity_blocks + longest), two),
                                np.zeros(4, np.int64), np.zeros(0, np.int64))

    def serve(self, requests: np.ndarray) -> None:
        self._log_room(requests)
        requeue = Const(int(self.policy.requeue_in_place))
        self._call(_serve, requests, Const(self.policy.code), self.policy.evict_first, requeue, self.state,
                   self.prompts, self.capacity_blocks, self.cache, self.cached_tokens)

    def cached_prefix(self, request: int) -> int:
        return self._prefix_tokens(request, _leading(self.stream.blocks_of(request), self.cache.cached))

    def cached_blocks(self) -> np.ndarray:
        return np.flatnonzero(self.cache.cached)

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


# The helpers of ``_serve`` take plain arrays, allocate nothing and are compiled without reference
# counting (``_nrt=False``). Numba's reference counting of arrays passed to a compiled function
# (two atomic operations per array and call) is removed only in simple functions; in these, with
# their loops, it stayed: ~75 % of the engine's time in a profile (0.8–1.7 M blocks/s then).

@numba.njit(cache=True, _nrt=False)
def _push_leaf(q, b, present, version, bp1, bp2, depth, hp1, hp2, ties, vers, sizes, counters):  # type: ignore[no-untyped-def]
    """Block b became (or stays) an evictable leaf of queue q with its current priority: a new
    row (its older rows go stale). A full heap is compacted first: its current rows, one per leaf
    at most."""
    rows = len(ties) // len(sizes)
    base = q * rows
    v = version[b] + 1
    version[b] = v
    if sizes[q] == rows:
        counters[ROUNDS] += 1
        m = base
        for i in range(base, base + sizes[q]):
            x = heap.id_of(ties[i])
            if vers[i] == version[x] and present[x] == 1:
                hp1[m] = hp1[i]
                if len(hp2) > 1:
                    hp2[m] = hp2[i]
                ties[m] = ties[i]
                vers[m] = vers[i]
                m += 1
        sizes[q] = m - base
        heap.heapify(hp1, hp2, ties, vers, sizes, q, base)
    heap.push(hp1, hp2, ties, vers, sizes, q, base, bp1[b], bp2[b] if len(bp2) > 1 else 0.0,
              heap.tie_of(depth[b], b), v)


@numba.njit(cache=True, _nrt=False)
def _valid_top(present, version, hp1, hp2, ties, vers, sizes, q):  # type: ignore[no-untyped-def]
    """Drop queue q's stale top rows; True when a current evictable leaf is left on top."""
    base = q * (len(ties) // len(sizes))
    while sizes[q] > 0:
        b = heap.id_of(ties[base])
        if vers[base] == version[b] and present[b] == 1:
            return True
        heap.pop(hp1, hp2, ties, vers, sizes, q, base)
    return False


@numba.njit(cache=True)
def _serve(requests, code, evict_first, requeue, state, p, cap, c, cached):  # type: ignore[no-untyped-def]
    # every array out of its tuple once; the helpers take plain arrays, and the policy hooks are
    # compiled for this policy only (``code`` is a constant: ``Const`` in ``CacheEngine._call``)
    present, version, bp1, bp2, counters, log = c.cached, c.version, c.p1, c.p2, c.counters, c.log
    hp1, hp2, ties, vers, sizes = c.heap.p1, c.heap.p2, c.heap.tie, c.heap.ver, c.heap.size
    ids, parent, depth, offsets, prompt_tokens = p.ids, p.parent, p.depth, p.offsets, p.prompt_tokens
    block_size = p.block_size
    two = len(bp2) > 1
    nq = len(sizes)
    rows = len(ties) // nq
    for r in requests:
        lo, hi = offsets[r], offsets[r + 1]
        n = hi - lo
        k = 0
        while k < n and present[ids[lo + k]] != 0:
            k += 1
        cached[r] = prompt_tokens[r] if k == n else k * block_size
        m = n if n < cap else cap  # k <= cache size <= cap, so m >= k
        for j in range(k, m):  # insert the misses, parents first (a parent is cached: prefix closure)
            b = ids[lo + j]
            policy_on_miss(code, state, b, r)
            present[b] = 1
            if parent[b] >= 0:
                present[parent[b]] += 1
        counters[SIZE] += m - k
        # touch tail -> head; an evict-first policy sees its misses only after the evictions
        # (libCacheSim's order: evict, then insert), unless nothing else is left to evict: the
        # touches run as up to two ranges, [first, last) from last - 1 down, then evictions
        deferred = evict_first and m > k
        first, last = 0, (k if deferred else m)
        while True:
            for j in range(last - 1, first - 1, -1):
                b = ids[lo + j]
                p1, p2 = policy_touch(code, state, b, b, r, lo + j, j >= k)
                bp1[b] = p1
                if two:
                    bp2[b] = p2
                if present[b] == 1:
                    _push_leaf(policy_queue(code, state, b), b, present, version, bp1, bp2, depth,
                               hp1, hp2, ties, vers, sizes, counters)
            stuck = False
            while counters[SIZE] > cap:
                q = policy_pick(code, state) if nq > 1 else 0
                if not _valid_top(present, version, hp1, hp2, ties, vers, sizes, q):
                    q = 1 - q if nq > 1 else q
                    if not _valid_top(present, version, hp1, hp2, ties, vers, sizes, q):
                        stuck = True
                        break
                base = q * rows
                b = heap.id_of(ties[base])
                p1 = hp1[base]
                p2 = hp2[base] if two else 0.0
                if not requeue:
                    heap.pop_top(hp1, hp2, ties, vers, sizes, q, base)
                keep, n1, n2 = policy_on_pop(code, state, b, b, r, p1, p2)
                if keep:
                    bp1[b] = n1
                    if two:
                        bp2[b] = n2
                if requeue:  # the top's row is still in: replaced if b stays in q, else popped
                    if keep and policy_queue(code, state, b) == q:
                        heap.requeue_top(b, version, bp1, bp2, hp1, hp2, ties, vers, sizes, q, base)
                        continue
                    heap.pop_top(hp1, hp2, ties, vers, sizes, q, base)
                again = b  # the block that gets a new row: b itself when kept, else maybe its parent
                if not keep:  # else the policy moved it (re-insertion, a cleared bit): back in, new priority
                    present[b] = 0
                    counters[SIZE] -= 1
                    counters[EVICTED] += 1
                    if len(log) > 0:
                        log[counters[LOGGED]] = b
                        counters[LOGGED] += 1
                    version[b] += 1
                    policy_evicted(code, state, b, b, p1)
                    again = parent[b]
                    if again >= 0:
                        present[again] -= 1
                        if present[again] != 1:
                            again = -1
                if again >= 0:
                    _push_leaf(policy_queue(code, state, again), again, present, version, bp1, bp2, depth,
                               hp1, hp2, ties, vers, sizes, counters)
            if stuck and not deferred:
                raise AssertionError("no evictable leaf although the cache is over capacity")
            if not deferred:
                break
            deferred = False  # the new blocks' touches, now or when nothing else was left to evict
            first, last = k, m
