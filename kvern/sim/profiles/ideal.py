"""``ideal``: the pure prefix-reuse model of DESIGN.md §3, at the trace's block granularity.

No last-token rule, no partial-slot effects: a request's cached prefix is the longest run of
its leading blocks present in the cache, and a fully present prompt is a full hit (its
partial tail block included, since equal keys mean equal whole prefixes). After the lookup
the request's blocks are all admitted (hits touched, misses inserted; a request longer than
the capacity keeps only its leading ``capacity`` blocks), then the policy evicts leaves
until at most ``capacity`` blocks remain. The request's own blocks are candidates like any
other. Entries are interned block ids, so all state lives in flat integer lists.
"""

from __future__ import annotations

from heapq import heappop, heappush

import numpy as np

from kvern.sim.policies import Policy, PolicyContext
from kvern.sim.profiles.base import PROGRESS_EVERY, Advance, Profile, register
from kvern.sim.result import SimResult
from kvern.sim.stream import BlockStream


@register
class Ideal(Profile):
    name = "ideal"
    summary = "pure prefix reuse: block-level, no last-token rule"
    last_token_rule = False

    def simulate(self, stream: BlockStream, policy: Policy, capacity_blocks: int,
                 advance: Advance | None = None) -> SimResult:
        cap = int(capacity_blocks)
        assert cap >= 1, "capacity must be at least one block"
        num_req, num_unique = stream.num_requests, stream.num_unique
        policy.bind(PolicyContext(stream, num_unique))
        touch, on_evict = policy.touch, policy.on_evict
        offs = stream.req_offsets.tolist()
        ids = stream.block_ids.tolist()
        prompt = stream.prompt_tokens.tolist()
        parent = stream.parent.tolist()
        neg_depth = (-stream.depth.astype(np.int64)).tolist()
        bs = stream.block_size

        in_cache = bytearray(num_unique)
        children = [0] * num_unique
        """Cached blocks that extend each block; a block is a leaf (evictable) at 0."""
        version = [0] * num_unique
        prio: list = [None] * num_unique
        heap: list = []
        size = evicted = 0
        cached = [0] * num_req

        for r in range(num_req):
            lo, hi = offs[r], offs[r + 1]
            n = hi - lo
            k = 0
            while k < n and in_cache[ids[lo + k]]:
                k += 1
            cached[r] = prompt[r] if k == n else k * bs
            m = n if n < cap else cap  # k <= size <= cap, so m >= k
            for j in range(k, m):  # insert misses, parents first
                b = ids[lo + j]
                in_cache[b] = 1
                size += 1
                p = parent[b]
                if p >= 0:
                    children[p] += 1
            for j in range(m - 1, -1, -1):  # touch tail -> head
                b = ids[lo + j]
                pk = touch(b, b, r, lo + j, j >= k)
                prio[b] = pk
                v = version[b] + 1
                version[b] = v
                if not children[b]:
                    heappush(heap, (pk, neg_depth[b], b, v))
            while size > cap:
                pk, _nd, b, v = heappop(heap)
                if v != version[b] or children[b] or not in_cache[b]:
                    continue  # stale: touched since, or no longer a leaf
                in_cache[b] = 0
                size -= 1
                evicted += 1
                version[b] += 1
                on_evict(b, pk)
                p = parent[b]
                if p >= 0:
                    children[p] -= 1
                    if not children[p]:
                        heappush(heap, (prio[p], neg_depth[p], p, version[p]))
            if advance is not None and (r + 1) % PROGRESS_EVERY == 0:
                advance(PROGRESS_EVERY)
        if advance is not None:
            advance(num_req % PROGRESS_EVERY)
        self.final_cache = np.flatnonzero(np.frombuffer(bytes(in_cache), dtype=np.uint8))
        return SimResult(
            model=stream.model, policy=policy.name, policy_label=policy.display_name, profile=self.name,
            capacity_blocks=cap, block_size=bs,
            prompt_tokens=stream.prompt_tokens.astype(np.int64),
            cached_tokens=np.asarray(cached, dtype=np.int64),
            unschedulable=np.zeros(num_req, dtype=bool),
            evicted_blocks=evicted,
        )
