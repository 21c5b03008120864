"""``vllm``: vLLM v1's ``KVCacheManager`` / ``BlockPool``, block for block (docs/architecture.md §6).

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
in docs/architecture.md §3; decode-time blocks are not modelled. The admission watermark
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

from typing import NamedTuple

import numba
import numpy as np

from kvern.ingest.stream import BlockStream
from kvern.sim import heap
from kvern.sim.engine import CacheEngine, Const
from kvern.sim.heap import Heap
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

# counters of the policy-generic engine, by name (ROUNDS: heap compactions; LOGGED: keys in the
# eviction log)
FRESH, EVICTED, ROUNDS, LOGGED = range(4)
Q_EVICTED, Q_LOGGED = 0, 1
"""The free queue's counters, by name."""


@register
class VLLM(Profile):
    name = "vllm"
    summary = "vLLM v1 BlockPool: full blocks, last token recomputed, no dedup"
    lru_queue: bool = True
    """LRU runs on vLLM's own structure, the doubly linked free queue (O(1) per block); tests
    turn this off to check it against the policy-generic heap engine."""

    def engine(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> CacheEngine:
        if self.lru_queue and policy.name == "lru":
            return VllmQueue(stream, policy, capacity_blocks)
        return VllmHeap(stream, policy, capacity_blocks)


class Copies(NamedTuple):
    """``BlockHashToBlockMap``: which slot holds which key, and each key's copies in insertion order."""

    slot_key: np.ndarray
    """int32[C]: the key (interned block id) slot s holds, -1 for none."""
    first: np.ndarray
    """int32[U]: the oldest copy of each key (-1: not cached)."""
    last: np.ndarray
    """int32[U]: the newest copy."""
    count: np.ndarray
    """int32[U]: copies of each key."""
    next_copy: np.ndarray
    """int32[C]: the next newer copy of the same key, -1 at the newest."""
    prev_copy: np.ndarray
    """int32[C]"""
    held: np.ndarray
    """int64[L]: scratch, the slots of the request being served (L = its longest prompt in blocks)."""


def _copies(stream: BlockStream, cap: int) -> Copies:
    u = stream.num_unique
    longest = stream.longest_request
    return Copies(np.full(cap, -1, np.int32), np.full(u, -1, np.int32), np.full(u, -1, np.int32),
                  np.zeros(u, np.int32), np.full(cap, -1, np.int32), np.full(cap, -1, np.int32),
                  np.zeros(max(longest, 1), np.int64))


class _VllmEngine(CacheEngine):
    profile = "vllm"
    copies: Copies

    def cached_prefix(self, request: int) -> int:
        return self._prefix_tokens(request, _leading(self.stream.blocks_of(request), self.copies.count))

    def cached_blocks(self) -> np.ndarray:
        return np.flatnonzero(self.copies.count)

    @property
    def used(self) -> int:
        """Slots that hold a key (a cached block; copies count once each)."""
        return int((self.copies.slot_key >= 0).sum())


class FreeQueue(NamedTuple):
    """``FreeKVCacheBlockQueue`` over the slots: sentinels head = C, tail = C + 1."""

    next_slot: np.ndarray
    """int64[C+2]"""
    prev_slot: np.ndarray
    """int64[C+2]"""
    counters: np.ndarray
    """int64[2]: Q_EVICTED, Q_LOGGED."""
    log: np.ndarray
    """int64[L]: keys whose last cached copy was dropped since the last ``take_evicted`` (empty: off)."""


class VllmQueue(_VllmEngine):
    """LRU exactly as ``BlockPool``: the free queue itself."""

    _log_state = "queue"
    _log_slot = Q_LOGGED

    def __init__(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> None:
        super().__init__(stream, policy, capacity_blocks)
        cap = self.capacity_blocks
        nxt = np.empty(cap + 2, np.int64)
        prv = np.empty(cap + 2, np.int64)
        order = np.arange(cap, dtype=np.int64)
        nxt[:cap], prv[:cap] = order + 1, order - 1
        prv[0], nxt[cap - 1] = cap, cap + 1
        nxt[cap], prv[cap + 1] = 0, cap - 1
        prv[cap], nxt[cap + 1] = -1, -1
        self.queue = FreeQueue(nxt, prv, np.zeros(2, np.int64), np.zeros(0, np.int64))
        self.copies = _copies(stream, cap)
        self.prompts = prompts_of(stream)

    def serve(self, requests: np.ndarray) -> None:
        self._log_room(requests)
        self._call(_serve_queue, requests, self.prompts, self.capacity_blocks, self.copies, self.queue,
                     self.cached_tokens, self.unschedulable)

    @property
    def evicted_blocks(self) -> int:
        return int(self.queue.counters[Q_EVICTED])


class Candidates(NamedTuple):
    """The policy-generic engine's free slots: fresh ones first, then cached ones by priority."""

    is_free: np.ndarray
    """uint8[C]: in the free queue (ref count 0)."""
    fresh: np.ndarray
    """int64[C]: a stack of slots without a key; ``counters[FRESH]`` of them, slot 0 popped first."""
    child_keys: np.ndarray
    """int32[U]: cached keys whose parent this key is (a key with none is a leaf)."""
    version: np.ndarray
    """int32[C]: bumped when the slot's row is pushed and at every change of the slot; older
    heap rows are stale."""
    p1: np.ndarray
    """float64[C]: the policy's first key from the slot's last touch."""
    p2: np.ndarray
    """float64[C], or float64[1] when the policy's second key is always 0 (``Policy.second_key``)."""
    heap: Heap
    """The evictable free cached slots (``kvern.sim.heap``), one heap per policy queue."""
    counters: np.ndarray
    """int64[4]: FRESH, EVICTED, ROUNDS, LOGGED."""
    log: np.ndarray
    """int64[L]: keys whose last cached copy was dropped since the last ``take_evicted`` (empty: off)."""


class VllmHeap(_VllmEngine):
    """Any policy: the free queue's cached part ordered by the policy (see the module docstring)."""

    _log_state = "free"
    _log_slot = LOGGED

    def __init__(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> None:
        super().__init__(stream, policy, capacity_blocks)
        cap = self.capacity_blocks
        self.state = policy.state(PolicyContext(stream, cap, cap))
        self.copies = _copies(stream, cap)
        two = policy.second_key
        self.free = Candidates(np.zeros(cap, np.uint8), np.arange(cap - 1, -1, -1, dtype=np.int64),
                               np.zeros(stream.num_unique, np.int32), np.zeros(cap, np.int32),
                               np.zeros(cap, np.float64), np.zeros(cap if two else 1, np.float64),
                               heap.new_heap(policy.queues, cap, two), np.array([cap, 0, 0, 0], np.int64),
                               np.zeros(0, np.int64))
        self.prompts = prompts_of(stream)

    def serve(self, requests: np.ndarray) -> None:
        self._log_room(requests)
        requeue = Const(int(self.policy.requeue_in_place))
        self._call(_serve_heap, requests, Const(self.policy.code), requeue, self.state, self.prompts,
                   self.capacity_blocks, self.copies, self.free, self.cached_tokens, self.unschedulable)

    @property
    def evicted_blocks(self) -> int:
        return int(self.free.counters[EVICTED])


@numba.njit(cache=True)
def _leading(blocks, count):  # type: ignore[no-untyped-def]
    k = 0
    while k < len(blocks) and count[blocks[k]] > 0:
        k += 1
    return k


@numba.njit(cache=True, inline="always")
def _q_remove(s, q):  # type: ignore[no-untyped-def]
    q.next_slot[q.prev_slot[s]] = q.next_slot[s]
    q.prev_slot[q.next_slot[s]] = q.prev_slot[s]


@numba.njit(cache=True, inline="always")
def _q_insert_after(at, s, q):  # type: ignore[no-untyped-def]
    q.next_slot[s] = q.next_slot[at]
    q.prev_slot[s] = at
    q.prev_slot[q.next_slot[at]] = s
    q.next_slot[at] = s


@numba.njit(cache=True, inline="always")
def _drop_copy(s, c):  # type: ignore[no-untyped-def]
    """``_maybe_evict_cached_block``: unlink slot ``s`` from its key's copies; return the key."""
    key = c.slot_key[s]
    if c.prev_copy[s] >= 0:
        c.next_copy[c.prev_copy[s]] = c.next_copy[s]
    else:
        c.first[key] = c.next_copy[s]
    if c.next_copy[s] >= 0:
        c.prev_copy[c.next_copy[s]] = c.prev_copy[s]
    else:
        c.last[key] = c.prev_copy[s]
    c.next_copy[s] = -1
    c.prev_copy[s] = -1
    c.count[key] -= 1
    c.slot_key[s] = -1
    return key


@numba.njit(cache=True, inline="always")
def _add_copy(s, key, c):  # type: ignore[no-untyped-def]
    """``cache_full_blocks``: slot ``s`` becomes the newest copy of ``key``."""
    c.slot_key[s] = key
    if c.count[key] == 0:
        c.first[key] = s
    else:
        c.prev_copy[s] = c.last[key]
        c.next_copy[c.last[key]] = s
    c.last[key] = s
    c.count[key] += 1


@numba.njit(cache=True)
def _serve_queue(requests, p, cap, c, q, cached, unschedulable):  # type: ignore[no-untyped-def]
    """LRU exactly as ``BlockPool``: ``touch`` removes, ``get_new_blocks`` pops the head,
    ``free_blocks`` prepends blocks without a hash and appends cached ones in the order given."""
    q_head, q_tail = cap, cap + 1
    held = c.held
    for r in requests:
        lo, hi = p.offsets[r], p.offsets[r + 1]
        n = hi - lo
        if n > cap:
            unschedulable[r] = 1
            continue
        p_tokens = p.prompt_tokens[r]
        max_hit = (p_tokens - 1) // p.block_size
        full = p_tokens // p.block_size
        k = 0
        while k < max_hit and c.count[p.ids[lo + k]] > 0:
            s = c.first[p.ids[lo + k]]
            _q_remove(s, q)
            held[k] = s
            k += 1
        cached[r] = k * p.block_size
        for j in range(k, n):
            s = q.next_slot[q_head]
            assert s != q_tail, "free queue empty although the request fits the pool"
            _q_remove(s, q)
            if c.slot_key[s] >= 0:
                key = _drop_copy(s, c)
                q.counters[Q_EVICTED] += 1
                if len(q.log) > 0 and c.count[key] == 0:
                    q.log[q.counters[Q_LOGGED]] = key
                    q.counters[Q_LOGGED] += 1
            held[j] = s
        for j in range(k, full):
            _add_copy(held[j], p.ids[lo + j], c)
        for j in range(n - 1, -1, -1):
            s = held[j]
            if c.slot_key[s] < 0:
                _q_insert_after(q_head, s, q)
            else:
                _q_insert_after(q.prev_slot[q_tail], s, q)


# The heap helpers take plain arrays and are compiled without reference counting (``_nrt=False``:
# they allocate nothing); see ``kvern.sim.profiles.ideal``.

@numba.njit(cache=True, _nrt=False)
def _push_slot(q, s, key, version, fp1, fp2, depth, hp1, hp2, ties, vers, sizes, counters, is_free, slot_key,
               count, child_keys):  # type: ignore[no-untyped-def]
    """Free cached slot s (holding ``key``) may go, with its current priority: a new row in
    queue q (its older rows go stale). A full heap is compacted first."""
    rows = len(ties) // len(sizes)
    base = q * rows
    v = version[s] + 1
    version[s] = v
    if sizes[q] == rows:
        counters[ROUNDS] += 1
        m = base
        for i in range(base, base + sizes[q]):
            x = heap.id_of(ties[i])
            kx = slot_key[x]
            if (vers[i] == version[x] and is_free[x] == 1 and kx >= 0
                    and (count[kx] > 1 or child_keys[kx] == 0)):
                hp1[m] = hp1[i]
                if len(hp2) > 1:
                    hp2[m] = hp2[i]
                ties[m] = ties[i]
                vers[m] = vers[i]
                m += 1
        sizes[q] = m - base
        heap.heapify(hp1, hp2, ties, vers, sizes, q, base)
    heap.push(hp1, hp2, ties, vers, sizes, q, base, fp1[s], fp2[s] if len(fp2) > 1 else 0.0,
              heap.tie_of(depth[key], s), v)


@numba.njit(cache=True, _nrt=False)
def _valid_top(q, version, hp1, hp2, ties, vers, sizes, is_free, slot_key, count, child_keys):  # type: ignore[no-untyped-def]
    """Drop queue q's stale top rows; True when a current evictable slot is left on top."""
    base = q * (len(ties) // len(sizes))
    while sizes[q] > 0:
        x = heap.id_of(ties[base])
        kx = slot_key[x]
        if (vers[base] == version[x] and is_free[x] == 1 and kx >= 0
                and (count[kx] > 1 or child_keys[kx] == 0)):
            return True
        heap.pop(hp1, hp2, ties, vers, sizes, q, base)
    return False


@numba.njit(cache=True, _nrt=False)
def _unlink(s, slot_key, first, last, count, next_copy, prev_copy):  # type: ignore[no-untyped-def]
    """``_drop_copy`` on plain arrays."""
    key = slot_key[s]
    if prev_copy[s] >= 0:
        next_copy[prev_copy[s]] = next_copy[s]
    else:
        first[key] = next_copy[s]
    if next_copy[s] >= 0:
        prev_copy[next_copy[s]] = prev_copy[s]
    else:
        last[key] = prev_copy[s]
    next_copy[s] = -1
    prev_copy[s] = -1
    count[key] -= 1
    slot_key[s] = -1
    return key


@numba.njit(cache=True, _nrt=False)
def _link(s, key, slot_key, first, last, count, next_copy, prev_copy):  # type: ignore[no-untyped-def]
    """``_add_copy`` on plain arrays."""
    slot_key[s] = key
    if count[key] == 0:
        first[key] = s
    else:
        prev_copy[s] = last[key]
        next_copy[last[key]] = s
    last[key] = s
    count[key] += 1


@numba.njit(cache=True)
def _serve_heap(requests, code, requeue, state, p, cap, c, f, cached, unschedulable):  # type: ignore[no-untyped-def]
    # every array out of its tuple once; the helpers take plain arrays (see ``_push_slot``), and
    # the policy hooks are compiled for this policy only (``code`` is a ``Const``)
    held, slot_key, first, last, count = c.held, c.slot_key, c.first, c.last, c.count
    next_copy, prev_copy = c.next_copy, c.prev_copy
    is_free, fresh, child_keys, version, fp1, fp2 = f.is_free, f.fresh, f.child_keys, f.version, f.p1, f.p2
    counters, log = f.counters, f.log
    hp1, hp2, ties, vers, sizes = f.heap.p1, f.heap.p2, f.heap.tie, f.heap.ver, f.heap.size
    ids, parent, depth, offsets, prompt_tokens = p.ids, p.parent, p.depth, p.offsets, p.prompt_tokens
    block_size = p.block_size
    two = len(fp2) > 1
    nq = len(sizes)
    rows = len(ties) // nq
    for r in requests:
        lo, hi = offsets[r], offsets[r + 1]
        n = hi - lo  # == ceil(prompt / block_size): every block, the partial tail included
        if n > cap:
            unschedulable[r] = 1
            continue
        p_tokens = prompt_tokens[r]
        max_hit = (p_tokens - 1) // block_size
        full = p_tokens // block_size
        # get_computed_blocks + touch: the first copy of each leading key leaves the queue
        k = 0
        while k < max_hit and count[ids[lo + k]] > 0:
            s = first[ids[lo + k]]
            is_free[s] = 0
            version[s] += 1
            held[k] = s
            k += 1
        cached[r] = k * block_size
        for j in range(k, full):  # the keys this request will cache, looked up before its evictions
            policy_on_miss(code, state, ids[lo + j], r)
        # get_new_blocks: fresh slots first, then the policy's victim among free cached slots
        for j in range(k, n):
            if counters[FRESH] > 0:
                counters[FRESH] -= 1
                held[j] = fresh[counters[FRESH]]
                continue
            while True:  # the victim (``on_pop`` may put tops back)
                q = policy_pick(code, state) if nq > 1 else 0
                if not _valid_top(q, version, hp1, hp2, ties, vers, sizes, is_free, slot_key, count,
                                  child_keys):
                    q = 1 - q if nq > 1 else q
                    if not _valid_top(q, version, hp1, hp2, ties, vers, sizes, is_free, slot_key, count,
                                      child_keys):
                        raise AssertionError("no evictable block although the request fits the pool")
                base = q * rows
                s = heap.id_of(ties[base])
                p1 = hp1[base]
                p2 = hp2[base] if two else 0.0
                if not requeue:
                    heap.pop_top(hp1, hp2, ties, vers, sizes, q, base)
                keep, n1, n2 = policy_on_pop(code, state, s, slot_key[s], r, p1, p2)
                if requeue:  # the top's row is still in: replaced if s stays in q, else popped
                    if keep and policy_queue(code, state, s) == q:
                        fp1[s] = n1
                        if two:
                            fp2[s] = n2
                        heap.requeue_top(s, version, fp1, fp2, hp1, hp2, ties, vers, sizes, q, base)
                        continue
                    heap.pop_top(hp1, hp2, ties, vers, sizes, q, base)
                if not keep:
                    break
                fp1[s] = n1
                if two:
                    fp2[s] = n2
                _push_slot(policy_queue(code, state, s), s, slot_key[s], version, fp1, fp2, depth, hp1, hp2,
                           ties, vers, sizes, counters, is_free, slot_key, count, child_keys)
            key = _unlink(s, slot_key, first, last, count, next_copy, prev_copy)
            is_free[s] = 0
            version[s] += 1
            counters[EVICTED] += 1
            if len(log) > 0 and count[key] == 0:
                log[counters[LOGGED]] = key
                counters[LOGGED] += 1
            policy_evicted(code, state, s, key, p1)
            if count[key] == 0 and parent[key] >= 0:
                pk = parent[key]
                child_keys[pk] -= 1
                if child_keys[pk] == 0:  # the parent's free copies became leaves
                    x = first[pk]
                    while x >= 0:
                        if is_free[x]:
                            _push_slot(policy_queue(code, state, x), x, pk, version, fp1, fp2, depth, hp1,
                                       hp2, ties, vers, sizes, counters, is_free, slot_key, count, child_keys)
                        x = next_copy[x]
            held[j] = s
        # cache_full_blocks: new full blocks get their key, appended to its copies
        for j in range(k, full):
            s = held[j]
            key = ids[lo + j]
            if count[key] == 0 and parent[key] >= 0:
                child_keys[parent[key]] += 1
            _link(s, key, slot_key, first, last, count, next_copy, prev_copy)
            if count[key] == 2:  # the older copy may go now
                x = first[key]
                if is_free[x]:
                    _push_slot(policy_queue(code, state, x), x, key, version, fp1, fp2, depth, hp1, hp2, ties,
                               vers, sizes, counters, is_free, slot_key, count, child_keys)
        # free(reversed(blocks)): no key -> back to the fresh head; cached -> the policy's queue
        for j in range(n - 1, -1, -1):
            s = held[j]
            key = slot_key[s]
            if key < 0:
                fresh[counters[FRESH]] = s
                counters[FRESH] += 1
                continue
            p1, p2 = policy_touch(code, state, s, key, r, lo + j, j >= k)
            fp1[s] = p1
            if two:
                fp2[s] = p2
            is_free[s] = 1
            version[s] += 1
            if count[key] > 1 or child_keys[key] == 0:
                _push_slot(policy_queue(code, state, s), s, key, version, fp1, fp2, depth, hp1, hp2, ties,
                           vers, sizes, counters, is_free, slot_key, count, child_keys)
