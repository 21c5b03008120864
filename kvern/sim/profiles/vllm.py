"""``vllm``: vLLM v1's ``KVCacheManager`` / ``BlockPool``, block for block (DESIGN.md §6).

What it reproduces, from vllm-project/vllm ``vllm/v1/core/`` (the version with
``BlockHashToBlockMap`` and ``free_blocks`` splitting fresh and cached blocks):

* **Pool.** ``capacity_blocks`` = C usable blocks. vLLM's ``BlockPool(num_gpu_blocks=N)``
  reserves block 0 as the ``null_block`` (popped from the free queue in ``__init__``), so C =
  N − 1 reproduces an engine started with N blocks.
* **Lookup.** ``KVCacheManager.get_computed_blocks`` caps the hit at ``num_tokens − 1`` (the
  last token is recomputed for its logits); ``FullAttentionManager.find_longest_cache_hit``
  walks the request's full-block hashes up to ``max_length // block_size`` blocks and stops
  at the first miss. So at most ``(prompt_tokens − 1) // block_size`` blocks hit.
* **Duplicates.** ``get_cached_block`` returns the first block cached under a hash; copies
  keep insertion order (``BlockHashToBlockMap.insert`` / ``pop``). vLLM does not deduplicate
  (NOTE #1 in ``BlockHashToBlockMap``): a block-aligned exact repeat hits all but its last
  block, recomputes that one into a new block and caches it under the same hash.
* **Allocation.** ``allocate_slots`` first ``touch``es the hit blocks (ref_cnt 0 → 1 takes
  them out of the free queue), then ``get_new_blocks`` pops ``ceil(prompt / block_size) − hits``
  blocks from the free queue's head, dropping the hash of each cached block it pops
  (``_maybe_evict_cached_block``). A request needing more than C blocks never fits
  (``num_blocks_to_allocate > get_num_free_blocks()``): it is counted unschedulable, a full
  miss, and leaves the cache untouched.
* **Caching.** ``cache_full_blocks`` hashes the ``prompt // block_size`` full blocks; the
  partial tail block stays without a hash.
* **Free.** ``SingleTypeKVCacheManager.free`` frees ``reversed(req_blocks)``;
  ``BlockPool.free_blocks`` prepends the blocks without a hash to the queue's head (used
  first) and appends the cached ones to its tail, so the queue is always
  ``[fresh blocks…, cached blocks in LRU order, tail blocks before their parents]``.

The model is sequential (one request runs, generating one token, then the next arrives), as
in DESIGN.md §3; decode-time blocks are not modelled. The free queue's cached part is kept
as a heap ordered by the policy: with ``lru`` the order is the free order, exactly vLLM's.
Other policies pick among the free cached blocks by their own priority (fresh blocks still
first), restricted to leaves at the key level: a block may go if another copy of its key is
cached or no cached block extends its key. vLLM's LRU queue never needs that restriction (a
block's key is always freed after every block that extends it), so it changes nothing for
``lru`` — ``tests/sim/test_vllm_reference.py`` checks this against a literal port of the
free queue.
"""

from __future__ import annotations

from heapq import heappop, heappush

import numpy as np

from kvern.sim.policies import Policy, PolicyContext
from kvern.sim.profiles.base import PROGRESS_EVERY, Advance, Profile, register
from kvern.sim.result import SimResult
from kvern.sim.stream import BlockStream


@register
class VLLM(Profile):
    name = "vllm"
    summary = "vLLM v1 BlockPool: full blocks, last token recomputed, no dedup"

    def simulate(self, stream: BlockStream, policy: Policy, capacity_blocks: int,
                 advance: Advance | None = None) -> SimResult:
        cap = int(capacity_blocks)
        assert cap >= 1, "capacity must be at least one block"
        num_req, num_unique = stream.num_requests, stream.num_unique
        policy.bind(PolicyContext(stream, cap))
        touch, on_evict = policy.touch, policy.on_evict
        offs = stream.req_offsets.tolist()
        ids = stream.block_ids.tolist()
        prompt = stream.prompt_tokens.tolist()
        parent = stream.parent.tolist()
        neg_depth = (-stream.depth.astype(np.int64)).tolist()
        bs = stream.block_size

        slot_key = [-1] * cap
        """Interned block held under a hash by each slot, -1 for none."""
        is_free = bytearray(cap)
        """1 = a cached slot in the free queue (an eviction candidate)."""
        fresh = list(range(cap - 1, -1, -1))
        """Free slots without a hash; the queue's head, popped first."""
        copies: list[list[int] | None] = [None] * num_unique
        """Slots cached under each key, in insertion order (``BlockHashToBlockMap``)."""
        child_keys = [0] * num_unique
        """Keys with at least one cached copy whose parent is this key."""
        version = [0] * cap
        prio: list = [None] * cap
        heap: list = []
        evicted = 0
        cached = [0] * num_req
        unschedulable = np.zeros(num_req, dtype=bool)

        def push_free_copies(key: int) -> None:
            for s in copies[key] or ():
                if is_free[s]:
                    heappush(heap, (prio[s], neg_depth[key], s, version[s]))

        def evict_one() -> int:
            nonlocal evicted
            while heap:
                pk, _nd, s, v = heappop(heap)
                key = slot_key[s]
                if v != version[s] or not is_free[s] or key < 0:
                    continue
                holders = copies[key]
                assert holders is not None, "a cached slot whose key has no copy list"
                if len(holders) == 1 and child_keys[key]:
                    continue  # not a leaf now; pushed again when it becomes one
                holders.remove(s)
                slot_key[s] = -1
                is_free[s] = 0
                version[s] += 1
                evicted += 1
                on_evict(s, pk)
                if not holders:
                    copies[key] = None
                    p = parent[key]
                    if p >= 0:
                        child_keys[p] -= 1
                        if not child_keys[p]:
                            push_free_copies(p)
                return s
            raise AssertionError("no evictable block although the request fits the pool")

        for r in range(num_req):
            lo, hi = offs[r], offs[r + 1]
            n = hi - lo  # == ceil(prompt / block_size): every block, partial tail included
            if n > cap:
                unschedulable[r] = True
                continue
            p_tokens = prompt[r]
            max_hit = (p_tokens - 1) // bs
            full = p_tokens // bs
            held: list[int] = []
            k = 0
            while k < max_hit:  # find_longest_cache_hit, then touch()
                holders = copies[ids[lo + k]]
                if not holders:
                    break
                s = holders[0]
                is_free[s] = 0
                version[s] += 1
                held.append(s)
                k += 1
            cached[r] = k * bs
            for _ in range(k, n):  # get_new_blocks: fresh first, then the policy's victim
                held.append(fresh.pop() if fresh else evict_one())
            for j in range(k, full):  # cache_full_blocks
                s, key = held[j], ids[lo + j]
                slot_key[s] = key
                holders = copies[key]
                if holders is None:
                    copies[key] = [s]
                    p = parent[key]
                    if p >= 0:
                        child_keys[p] += 1
                else:
                    holders.append(s)
                    if len(holders) == 2:
                        push_free_copies(key)  # the older copy may be a leaf now
            for j in range(n - 1, -1, -1):  # free(reversed(blocks))
                s = held[j]
                key = slot_key[s]
                if key < 0:
                    fresh.append(s)
                    continue
                pk = touch(s, key, r, lo + j, j >= k)
                prio[s] = pk
                is_free[s] = 1
                v = version[s] + 1
                version[s] = v
                holders = copies[key]
                if len(holders) > 1 or not child_keys[key]:
                    heappush(heap, (pk, neg_depth[key], s, v))
            if advance is not None and (r + 1) % PROGRESS_EVERY == 0:
                advance(PROGRESS_EVERY)
        if advance is not None:
            advance(num_req % PROGRESS_EVERY)
        self.final_slots = list(slot_key)
        return SimResult(
            model=stream.model, policy=policy.name, policy_label=policy.display_name, profile=self.name,
            capacity_blocks=cap, block_size=bs,
            prompt_tokens=stream.prompt_tokens.astype(np.int64),
            cached_tokens=np.asarray(cached, dtype=np.int64),
            unschedulable=unschedulable,
            evicted_blocks=evicted,
        )
