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

``lru`` runs on a port of the free queue itself (a doubly linked list over the slots, O(1) per
block); the other policies on the generic engine below, which ``lru`` also runs identically
(tested).

The model is sequential (one request runs, generating one token, then the next arrives), as
in DESIGN.md §3; decode-time blocks are not modelled. The admission watermark
(``KVCacheManager(watermark=…)``, default 0.0) is taken as 0, and chunked prefill does not
change the outcome here: with one request in flight every chunk pops from the same queue in
the same order, and the lookup happens once, before the first chunk. The free queue's cached part is kept
as a heap ordered by the policy: with ``lru`` (priority = request index, ties deeper first)
the order is the free order, exactly vLLM's. Slots, the copies of each key (a linked list in
insertion order) and the heap are flat arrays; the loop is compiled.
Other policies pick among the free cached blocks by their own priority (fresh blocks still
first), restricted to leaves at the key level: a block may go if another copy of its key is
cached or no cached block extends its key. vLLM's LRU queue never needs that restriction (a
block's key is always freed after every block that extends it), so it changes nothing for
``lru`` — ``tests/sim/test_vllm.py`` checks this against a literal port of the free queue.
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

# counters: heap length, fresh slots, evictions, compaction rounds
_HN, _FRESH, _EVICTED, _ROUNDS = 0, 1, 2, 3


@register
class VLLM(Profile):
    name = "vllm"
    summary = "vLLM v1 BlockPool: full blocks, last token recomputed, no dedup"
    lru_queue: bool = True
    """LRU runs on vLLM's own structure, the doubly linked free queue (O(1) per block); tests
    turn this off to check it against the policy-generic heap engine."""

    def simulate(self, stream: BlockStream, policy: Policy, capacity_blocks: int,
                 advance: Advance | None = None) -> SimResult:
        cap = int(capacity_blocks)
        assert cap >= 1, "capacity must be at least one block"
        if self.lru_queue and policy.name == "lru":
            return self._lru(stream, policy, cap, advance)
        num_req, num_unique = stream.num_requests, stream.num_unique
        st = policy.state(PolicyContext(stream, cap))
        lengths = np.diff(stream.req_offsets)
        slot_key = np.full(cap, -1, dtype=np.int64)
        is_free = np.zeros(cap, dtype=np.uint8)
        fresh = np.arange(cap - 1, -1, -1, dtype=np.int64)  # a stack: slot 0 is popped first
        head = np.full(num_unique, -1, dtype=np.int64)  # copies of a key: first (oldest) slot
        tail = np.full(num_unique, -1, dtype=np.int64)
        ncopies = np.zeros(num_unique, dtype=np.int32)
        nxt = np.full(cap, -1, dtype=np.int64)
        prv = np.full(cap, -1, dtype=np.int64)
        child_keys = np.zeros(num_unique, dtype=np.int32)
        version = np.zeros(cap, dtype=np.int64)
        stamp = np.zeros(cap, dtype=np.int64)
        prio = np.zeros((cap, 2), dtype=np.float64)
        held = np.zeros(max(int(lengths.max()) if num_req else 1, 1), dtype=np.int64)
        h = heap.new_heap(cap)
        counters = np.array([0, cap, 0, 0], dtype=np.int64)
        cached = np.zeros(num_req, dtype=np.int64)
        unschedulable = np.zeros(num_req, dtype=np.uint8)
        ids = stream.block_ids.astype(np.int64)
        neg_depth = -stream.depth.astype(np.int64)
        parent = stream.parent.astype(np.int64)
        prompt = stream.prompt_tokens.astype(np.int64)
        for r0 in range(0, num_req, CHUNK):
            r1 = min(num_req, r0 + CHUNK)
            _vllm_chunk(r0, r1, policy.code, st.ef, st.ei, st.bf, st.oi, st.sc, stream.req_offsets, ids,
                        prompt, parent, neg_depth, stream.block_size, cap, slot_key, is_free, fresh, head,
                        tail, ncopies, nxt, prv, child_keys, version, stamp, prio, held, h, counters,
                        cached, unschedulable)
            if advance is not None:
                advance(r1 - r0)
        self.final_slots = slot_key
        return SimResult(
            model=stream.model, policy=policy.name, policy_label=policy.display_name, profile=self.name,
            capacity_blocks=cap, block_size=stream.block_size, prompt_tokens=prompt, cached_tokens=cached,
            unschedulable=unschedulable.astype(bool), evicted_blocks=int(counters[_EVICTED]),
        )


    def _lru(self, stream: BlockStream, policy: Policy, cap: int, advance: Advance | None) -> SimResult:
        num_req, num_unique = stream.num_requests, stream.num_unique
        lengths = np.diff(stream.req_offsets)
        slot_key = np.full(cap, -1, dtype=np.int64)
        qnext = np.empty(cap + 2, dtype=np.int64)  # the free queue; sentinels: head = cap, tail = cap + 1
        qprev = np.empty(cap + 2, dtype=np.int64)
        order = np.arange(cap, dtype=np.int64)
        qnext[:cap], qprev[:cap] = order + 1, order - 1
        qprev[0], qnext[cap - 1] = cap, cap + 1
        qnext[cap], qprev[cap + 1] = 0, cap - 1
        qprev[cap], qnext[cap + 1] = -1, -1
        head = np.full(num_unique, -1, dtype=np.int64)
        tail = np.full(num_unique, -1, dtype=np.int64)
        ncopies = np.zeros(num_unique, dtype=np.int32)
        nxt = np.full(cap, -1, dtype=np.int64)
        prv = np.full(cap, -1, dtype=np.int64)
        held = np.zeros(max(int(lengths.max()) if num_req else 1, 1), dtype=np.int64)
        counters = np.zeros(1, dtype=np.int64)
        cached = np.zeros(num_req, dtype=np.int64)
        unschedulable = np.zeros(num_req, dtype=np.uint8)
        ids = stream.block_ids.astype(np.int64)
        prompt = stream.prompt_tokens.astype(np.int64)
        for r0 in range(0, num_req, CHUNK):
            r1 = min(num_req, r0 + CHUNK)
            _vllm_queue_chunk(r0, r1, stream.req_offsets, ids, prompt, stream.block_size, cap, slot_key,
                              qnext, qprev, head, tail, ncopies, nxt, prv, held, counters, cached,
                              unschedulable)
            if advance is not None:
                advance(r1 - r0)
        self.final_slots = slot_key
        return SimResult(
            model=stream.model, policy=policy.name, policy_label=policy.display_name, profile=self.name,
            capacity_blocks=cap, block_size=stream.block_size, prompt_tokens=prompt, cached_tokens=cached,
            unschedulable=unschedulable.astype(bool), evicted_blocks=int(counters[0]),
        )


@numba.njit(cache=True, inline="always")
def _q_remove(s, qnext, qprev):  # type: ignore[no-untyped-def]
    qnext[qprev[s]] = qnext[s]
    qprev[qnext[s]] = qprev[s]


@numba.njit(cache=True, inline="always")
def _q_insert_after(p, s, qnext, qprev):  # type: ignore[no-untyped-def]
    qnext[s] = qnext[p]
    qprev[s] = p
    qprev[qnext[p]] = s
    qnext[p] = s


@numba.njit(cache=True, inline="always")
def _drop_copy(s, slot_key, head, tail, nxt, prv, ncopies):  # type: ignore[no-untyped-def]
    """``_maybe_evict_cached_block``: unlink slot ``s`` from its key's copies; return the key."""
    key = slot_key[s]
    if prv[s] >= 0:
        nxt[prv[s]] = nxt[s]
    else:
        head[key] = nxt[s]
    if nxt[s] >= 0:
        prv[nxt[s]] = prv[s]
    else:
        tail[key] = prv[s]
    nxt[s] = -1
    prv[s] = -1
    ncopies[key] -= 1
    slot_key[s] = -1
    return key


@numba.njit(cache=True, inline="always")
def _add_copy(s, key, slot_key, head, tail, nxt, prv, ncopies):  # type: ignore[no-untyped-def]
    """``cache_full_blocks``: slot ``s`` becomes the newest copy of ``key``."""
    slot_key[s] = key
    if ncopies[key] == 0:
        head[key] = s
    else:
        prv[s] = tail[key]
        nxt[tail[key]] = s
    tail[key] = s
    ncopies[key] += 1


@numba.njit(cache=True)
def _vllm_queue_chunk(r0, r1, offs, ids, prompt, bs, cap, slot_key, qnext, qprev, head, tail,  # type: ignore[no-untyped-def]
                      ncopies, nxt, prv, held, counters, cached, unschedulable):
    """LRU exactly as ``BlockPool``: ``touch`` removes, ``get_new_blocks`` pops the head,
    ``free_blocks`` prepends blocks without a hash and appends cached ones in the order given."""
    q_head, q_tail = cap, cap + 1
    for r in range(r0, r1):
        lo, hi = offs[r], offs[r + 1]
        n = hi - lo
        if n > cap:
            unschedulable[r] = 1
            continue
        p_tokens = prompt[r]
        max_hit = (p_tokens - 1) // bs
        full = p_tokens // bs
        k = 0
        while k < max_hit and ncopies[ids[lo + k]] > 0:
            s = head[ids[lo + k]]
            _q_remove(s, qnext, qprev)
            held[k] = s
            k += 1
        cached[r] = k * bs
        for j in range(k, n):
            s = qnext[q_head]
            assert s != q_tail, "free queue empty although the request fits the pool"
            _q_remove(s, qnext, qprev)
            if slot_key[s] >= 0:
                _drop_copy(s, slot_key, head, tail, nxt, prv, ncopies)
                counters[0] += 1
            held[j] = s
        for j in range(k, full):
            _add_copy(held[j], ids[lo + j], slot_key, head, tail, nxt, prv, ncopies)
        for j in range(n - 1, -1, -1):
            s = held[j]
            if slot_key[s] < 0:
                _q_insert_after(q_head, s, qnext, qprev)
            else:
                _q_insert_after(qprev[q_tail], s, qnext, qprev)


@numba.njit(cache=True, inline="always")
def _evictable(s, slot_key, is_free, ncopies, child_keys):  # type: ignore[no-untyped-def]
    """A free cached slot that may go: another copy of its key stays, or nothing extends it."""
    key = slot_key[s]
    return is_free[s] == 1 and key >= 0 and (ncopies[key] > 1 or child_keys[key] == 0)


@numba.njit(cache=True)
def _compact(h, n, version, slot_key, is_free, ncopies, child_keys, stamp, round_):  # type: ignore[no-untyped-def]
    m = 0
    for i in range(n):
        s = int(h[i, 3])
        if h[i, 4] == version[s] and stamp[s] != round_ and _evictable(s, slot_key, is_free, ncopies,
                                                                         child_keys):
            stamp[s] = round_
            for c in range(heap.ROW):
                h[m, c] = h[i, c]
            m += 1
    heap.heapify(h, m)
    return m


@numba.njit(cache=True)
def _push(s, key, h, counters, prio, neg_depth, version, slot_key, is_free, ncopies, child_keys,  # type: ignore[no-untyped-def]
          stamp):
    hn = counters[_HN]
    if hn == h.shape[0]:
        counters[_ROUNDS] += 1
        hn = _compact(h, hn, version, slot_key, is_free, ncopies, child_keys, stamp, counters[_ROUNDS])
    counters[_HN] = heap.push(h, hn, prio[s, 0], prio[s, 1], neg_depth[key], s, version[s])


@numba.njit(cache=True)
def _vllm_chunk(r0, r1, code, ef, ei, bf, oi, sc, offs, ids, prompt, parent, neg_depth, bs, cap,  # type: ignore[no-untyped-def]
                slot_key, is_free, fresh, head, tail, ncopies, nxt, prv, child_keys, version, stamp,
                prio, held, h, counters, cached, unschedulable):
    for r in range(r0, r1):
        lo, hi = offs[r], offs[r + 1]
        n = hi - lo  # == ceil(prompt / block_size): every block, the partial tail included
        if n > cap:
            unschedulable[r] = 1
            continue
        p_tokens = prompt[r]
        max_hit = (p_tokens - 1) // bs
        full = p_tokens // bs
        # get_computed_blocks + touch: the first copy of each leading key leaves the queue
        k = 0
        while k < max_hit and ncopies[ids[lo + k]] > 0:
            s = head[ids[lo + k]]
            is_free[s] = 0
            version[s] += 1
            held[k] = s
            k += 1
        cached[r] = k * bs
        # get_new_blocks: fresh slots first, then the policy's victim among free cached slots
        for j in range(k, n):
            if counters[_FRESH] > 0:
                counters[_FRESH] -= 1
                held[j] = fresh[counters[_FRESH]]
                continue
            while True:
                assert counters[_HN] > 0, "no evictable block although the request fits the pool"
                s = int(h[0, 3])
                v = h[0, 4]
                p1 = h[0, 0]
                counters[_HN] = heap.pop(h, counters[_HN])
                if v == version[s] and _evictable(s, slot_key, is_free, ncopies, child_keys):
                    break
            key = _drop_copy(s, slot_key, head, tail, nxt, prv, ncopies)
            is_free[s] = 0
            version[s] += 1
            counters[_EVICTED] += 1
            policy_evicted(code, sc, p1)
            if ncopies[key] == 0 and parent[key] >= 0:
                pk = parent[key]
                child_keys[pk] -= 1
                if child_keys[pk] == 0:  # the parent's free copies became leaves
                    c = head[pk]
                    while c >= 0:
                        if is_free[c]:
                            _push(c, pk, h, counters, prio, neg_depth, version, slot_key, is_free,
                                  ncopies, child_keys, stamp)
                        c = nxt[c]
            held[j] = s
        # cache_full_blocks: new full blocks get their key, appended to its copies
        for j in range(k, full):
            s = held[j]
            key = ids[lo + j]
            if ncopies[key] == 0 and parent[key] >= 0:
                child_keys[parent[key]] += 1
            _add_copy(s, key, slot_key, head, tail, nxt, prv, ncopies)
            if ncopies[key] == 2:  # the older copy may go now
                c = head[key]
                if is_free[c]:
                    _push(c, key, h, counters, prio, neg_depth, version, slot_key, is_free, ncopies,
                          child_keys, stamp)
        # free(reversed(blocks)): no key -> back to the fresh head; cached -> the policy's queue
        for j in range(n - 1, -1, -1):
            s = held[j]
            key = slot_key[s]
            if key < 0:
                fresh[counters[_FRESH]] = s
                counters[_FRESH] += 1
                continue
            p1, p2 = policy_touch(code, ef, ei, bf, oi, sc, s, key, r, lo + j, j >= k)
            prio[s, 0] = p1
            prio[s, 1] = p2
            is_free[s] = 1
            version[s] += 1
            if ncopies[key] > 1 or child_keys[key] == 0:
                _push(s, key, h, counters, prio, neg_depth, version, slot_key, is_free, ncopies,
                      child_keys, stamp)
