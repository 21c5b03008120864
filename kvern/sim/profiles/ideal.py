"""``ideal``: the pure prefix-reuse model of DESIGN.md §3, at the trace's block granularity.

No last-token rule, no partial-slot effects: a request's cached prefix is the longest run of
its leading blocks present in the cache, and a fully present prompt is a full hit (its
partial tail block included, since equal keys mean equal whole prefixes) — exactly
``kvern.sim.bounds.infinite_cache_hits`` when nothing is evicted. After the lookup the
request's blocks are all admitted (hits touched, misses inserted; a request longer than the
capacity keeps only its leading ``capacity`` blocks), then the policy evicts leaves until at
most ``capacity`` blocks remain. The request's own blocks are candidates like any other.

Entries are the interned block ids; all state is flat arrays and the loop is compiled.
"""

from __future__ import annotations

import numba
import numpy as np

from kvern.ingest.stream import BlockStream
from kvern.sim import heap
from kvern.sim.policies import Policy, PolicyContext
from kvern.sim.policies.kernels import policy_evicted, policy_touch
from kvern.sim.profiles.base import CHUNK, Advance, Profile, register
from kvern.sim.result import SimResult


@register
class Ideal(Profile):
    name = "ideal"
    summary = "pure prefix reuse: block-level, no last-token rule"
    last_token_rule = False
    lru_kernel: bool = True
    """LRU goes to ``kvern.sim.kernels.lru_run`` (O(1) per block, same results); tests turn it
    off to check that kernel against this engine."""

    def simulate(self, stream: BlockStream, policy: Policy, capacity_blocks: int,
                 advance: Advance | None = None) -> SimResult:
        cap = int(capacity_blocks)
        assert cap >= 1, "capacity must be at least one block"
        if self.lru_kernel and policy.name == "lru":
            return self._lru(stream, policy, cap, advance)
        num_req, num_unique = stream.num_requests, stream.num_unique
        st = policy.state(PolicyContext(stream, num_unique))
        lengths = np.diff(stream.req_offsets)
        longest = int(lengths.max()) if num_req else 0
        h = heap.new_heap(min(num_unique, cap + longest))
        in_cache = np.zeros(num_unique, dtype=np.uint8)
        children = np.zeros(num_unique, dtype=np.int32)
        version = np.zeros(num_unique, dtype=np.int64)
        stamp = np.zeros(num_unique, dtype=np.int64)
        prio = np.zeros((num_unique, 2), dtype=np.float64)
        counters = np.zeros(4, dtype=np.int64)  # heap length, cache size, evictions, compactions
        cached = np.zeros(num_req, dtype=np.int64)
        ids = stream.block_ids.astype(np.int64)
        neg_depth = -stream.depth.astype(np.int64)
        parent = stream.parent.astype(np.int64)
        prompt = stream.prompt_tokens.astype(np.int64)
        for r0 in range(0, num_req, CHUNK):
            r1 = min(num_req, r0 + CHUNK)
            _ideal_chunk(r0, r1, policy.code, st.ef, st.ei, st.bf, st.oi, st.sc, stream.req_offsets, ids,
                         prompt, parent, neg_depth, stream.block_size, cap, in_cache, children, version,
                         stamp, prio, h, counters, cached)
            if advance is not None:
                advance(r1 - r0)
        self.final_cache = np.flatnonzero(in_cache)
        return SimResult(
            model=stream.model, policy=policy.name, policy_label=policy.display_name, profile=self.name,
            capacity_blocks=cap, block_size=stream.block_size, prompt_tokens=prompt, cached_tokens=cached,
            unschedulable=np.zeros(num_req, dtype=bool), evicted_blocks=int(counters[2]),
        )

    def _lru(self, stream: BlockStream, policy: Policy, cap: int, advance: Advance | None) -> SimResult:
        from kvern.sim.kernels import lru_run

        run = lru_run(stream, cap, last_token_rule=self.last_token_rule)
        if advance is not None:
            advance(stream.num_requests)
        self.final_cache = run.final_cache
        return SimResult(
            model=stream.model, policy=policy.name, policy_label=policy.display_name, profile=self.name,
            capacity_blocks=cap, block_size=stream.block_size,
            prompt_tokens=stream.prompt_tokens.astype(np.int64),
            cached_tokens=run.cached_tokens.astype(np.int64),
            unschedulable=np.zeros(stream.num_requests, dtype=bool), evicted_blocks=run.evicted_blocks,
        )


@numba.njit(cache=True)
def _compact(h, n, version, in_cache, children, stamp, round_):  # type: ignore[no-untyped-def]
    """Keep one row per currently evictable leaf whose row is current; re-heapify."""
    m = 0
    for i in range(n):
        b = int(h[i, 3])
        if h[i, 4] == version[b] and in_cache[b] and children[b] == 0 and stamp[b] != round_:
            stamp[b] = round_
            for c in range(heap.ROW):
                h[m, c] = h[i, c]
            m += 1
    heap.heapify(h, m)
    return m


@numba.njit(cache=True)
def _ideal_chunk(r0, r1, code, ef, ei, bf, oi, sc, offs, ids, prompt, parent, neg_depth, bs, cap,  # type: ignore[no-untyped-def]
                 in_cache, children, version, stamp, prio, h, counters, cached):
    hn, size, evicted, rounds = counters[0], counters[1], counters[2], counters[3]
    for r in range(r0, r1):
        lo, hi = offs[r], offs[r + 1]
        n = hi - lo
        k = 0
        while k < n and in_cache[ids[lo + k]]:
            k += 1
        cached[r] = prompt[r] if k == n else k * bs
        m = n if n < cap else cap  # k <= cache size <= cap, so m >= k
        for j in range(k, m):  # insert the misses, parents first
            b = ids[lo + j]
            in_cache[b] = 1
            size += 1
            if parent[b] >= 0:
                children[parent[b]] += 1
        for j in range(m - 1, -1, -1):  # touch tail -> head
            b = ids[lo + j]
            p1, p2 = policy_touch(code, ef, ei, bf, oi, sc, b, b, r, lo + j, j >= k)
            prio[b, 0] = p1
            prio[b, 1] = p2
            version[b] += 1
            if children[b] == 0:
                if hn == h.shape[0]:
                    rounds += 1
                    hn = _compact(h, hn, version, in_cache, children, stamp, rounds)
                hn = heap.push(h, hn, p1, p2, neg_depth[b], b, version[b])
        while size > cap:
            assert hn > 0, "no evictable leaf although the cache is over capacity"
            b = int(h[0, 3])
            v = h[0, 4]
            p1 = h[0, 0]
            hn = heap.pop(h, hn)
            if v != version[b] or children[b] != 0 or in_cache[b] == 0:
                continue  # stale: touched since, or no longer a leaf
            in_cache[b] = 0
            size -= 1
            evicted += 1
            version[b] += 1
            policy_evicted(code, sc, p1)
            p = parent[b]
            if p >= 0:
                children[p] -= 1
                if children[p] == 0:
                    if hn == h.shape[0]:
                        rounds += 1
                        hn = _compact(h, hn, version, in_cache, children, stamp, rounds)
                    hn = heap.push(h, hn, prio[p, 0], prio[p, 1], neg_depth[p], p, version[p])
    counters[0], counters[1], counters[2], counters[3] = hn, size, evicted, rounds
