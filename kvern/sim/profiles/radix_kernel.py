"""SGLang's radix tree (``python/sglang/srt/mem_cache/radix_cache.py``), compiled over flat arrays.

The ``sglang`` profile's engine (``kvern.sim.profiles.sglang``) runs a chunk of requests per call
through ``serve``. A node holds a run of pages; its key is not copied but named by
``(key_start, key_len)`` into the stream's own flat page array (token ids, or interned block
ids): every key SGLang stores is a slice of some request's pages, and a split only moves the
start. The rest is one int32 row per node (``node[x, COLUMN]``):

* ``PARENT``, ``KEY_LEN``, ``LOCK`` (``lock_ref``), ``CHILDREN`` (``len(node.children)``);
* ``TIME`` (``last_access_time``, the number of the walk that last touched the node), which
  doubles as the version of its heap rows: it only grows, and a row whose time is older is stale;
* ``SERIAL``, the node id in creation order, as SGLang's ``TreeNode.counter`` assigns it. The
  eviction heap's order is ``(time, serial)``: SGLang ranks leaves by ``last_access_time``
  alone, and the nodes of one walk share a time, so such ties break toward the older node.

Child lookup (``node.children[get_child_key(key)]``) is an open-addressing table of node slots,
keyed by (parent slot, first page) read back from the child's own row; linear probing, deletion
by backward shift. The lazy min-heap of unlocked leaves (``evict``) holds ``time << 32 | serial``
with the node's slot beside it; a full heap is compacted (stale rows dropped, duplicates
merged, re-heapified). Slots of evicted nodes are reused (a free list through ``PARENT``), so the
state is proportional to the nodes the tree holds, never to the trace. When fewer than three
free slots remain before a request (a request creates at most two split nodes and one leaf),
``serve`` returns and the engine grows every array twofold (``grown``).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from kvern.ingest.stream import BlockStream

CLOCK, NEXT_ID, PAGES, EVICTED, LIVE, TOP, FREE, HEAP_LEN = range(8)
"""The tree's counters, by name: walks so far, the next node id, pages held, pages evicted,
live nodes (the root included), slots ever used, the free-slot list's head, heap rows."""

PARENT, KEY_LEN, LOCK, TIME, SERIAL, CHILDREN = range(6)
"""The columns of a node row, by name."""

ROOT = 0
EMPTY = -1
LOW32 = (1 << 32) - 1
NEW_PER_REQUEST = 3
"""Nodes one request may create: a split in ``match_prefix``, a split and a leaf in ``insert``."""


class RadixKeys(NamedTuple):
    """What the scheduler hands the tree per request, as the stream's own arrays."""

    pages: np.ndarray
    """int32[P]: every request's pages in order (token ids, or interned block ids)."""
    offsets: np.ndarray
    """int64[R+1]: request r's pages start at ``offsets[r]``."""
    prompt_tokens: np.ndarray
    """int32[R]"""
    block_size: int
    by_token: bool
    """A page is one token (tokenized logs); else one block (hash-id traces)."""


class RadixTree(NamedTuple):
    """Node rows (slot 0 is the root), the child table, the heap of evictable leaves, counters."""

    node: np.ndarray
    """int32[N, 6]: PARENT (the root: -1; a free slot: the next free slot), KEY_LEN, LOCK, TIME,
    SERIAL (-1: a free slot), CHILDREN."""
    key_start: np.ndarray
    """int64[N]: the node's pages are ``pages[key_start : key_start + key_len]``."""
    table: np.ndarray
    """int32[2N]: child slots by (parent slot, first page); -1 empty."""
    heap_key: np.ndarray
    """int64[2N+16]: ``time << 32 | serial`` of each heap row."""
    heap_node: np.ndarray
    """int32[2N+16]: the slot of each heap row."""
    counters: np.ndarray
    """int64[8]: CLOCK, NEXT_ID, PAGES, EVICTED, LIVE, TOP, FREE, HEAP_LEN."""


def radix_keys(stream: BlockStream) -> RadixKeys:
    """Pages of one token when the stream has token ids, else pages of one block. The arrays are
    the stream's own, not copies, so a stream that grows under the engine is seen as it grows."""
    prompt = np.ascontiguousarray(stream.prompt_tokens, dtype=np.int32)
    assert stream.num_requests < 1 << 29, "walk times and node ids must fit in 31 bits"
    if stream.token_ids is not None:
        assert stream.token_offsets is not None
        offsets = np.ascontiguousarray(stream.token_offsets, dtype=np.int64)
        assert np.array_equal(np.diff(offsets), prompt), "token ids and prompt_tokens disagree"
        return RadixKeys(np.ascontiguousarray(stream.token_ids, dtype=np.int32), offsets, prompt,
                         int(stream.block_size), True)
    return RadixKeys(np.ascontiguousarray(stream.block_ids, dtype=np.int32),
                     np.ascontiguousarray(stream.req_offsets, dtype=np.int64), prompt,
                     int(stream.block_size), False)


def new_tree(nodes: int = 64) -> RadixTree:
    """An empty tree (the root, locked for good, as ``RadixCache.reset`` makes it) with room for
    ``nodes`` (rounded up to a power of two: the child table's size is a mask)."""
    t = _empty(1 << max(int(nodes) - 1, 2 * NEW_PER_REQUEST).bit_length())
    t.node[ROOT, PARENT] = -1
    t.node[ROOT, LOCK] = 1
    t.node[ROOT, SERIAL] = 0
    t.counters[NEXT_ID] = 1
    t.counters[LIVE] = 1
    t.counters[TOP] = 1
    t.counters[FREE] = -1
    return t


def grown(t: RadixTree, pages: np.ndarray) -> RadixTree:
    """``t`` with twice the node slots (the child table rebuilt, the heap copied)."""
    n = len(t.node)
    g = _empty(2 * n)
    g.node[:n] = t.node
    g.key_start[:n] = t.key_start
    h = int(t.counters[HEAP_LEN])
    g.heap_key[:h] = t.heap_key[:h]
    g.heap_node[:h] = t.heap_node[:h]
    g.counters[:] = t.counters
    _rehash(g, pages)
    return g


def _empty(n: int) -> RadixTree:
    node = np.zeros((n, 6), np.int32)
    node[:, SERIAL] = -1
    h = 2 * n + 16
    return RadixTree(node, np.zeros(n, np.int64), np.full(2 * n, EMPTY, np.int32), np.zeros(h, np.int64),
                     np.zeros(h, np.int32), np.zeros(8, np.int64))


# -- the child table ---------------------------------------------------------------------------

@numba.njit(cache=True)
def _bucket(parent, page, mask):  # type: ignore[no-untyped-def]
    x = ((np.uint64(parent) << np.uint64(32)) | np.uint64(np.uint32(page))) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(29)
    return np.int64(x & np.uint64(mask))


@numba.njit(cache=True)
def _find(t, pages, parent, page):  # type: ignore[no-untyped-def]
    """``node.children.get(page)``: (the child's slot or -1, its table position or the empty one)."""
    mask = len(t.table) - 1
    i = _bucket(parent, page, mask)
    while True:
        c = np.int64(t.table[i])
        if c == EMPTY or (t.node[c, PARENT] == parent and pages[t.key_start[c]] == page):
            return c, i
        i = (i + 1) & mask


@numba.njit(cache=True)
def _unlink(t, pages, i):  # type: ignore[no-untyped-def]
    """Empty table position ``i``, shifting later rows of the probe run back (no tombstones)."""
    mask = len(t.table) - 1
    j = i
    while True:
        j = (j + 1) & mask
        c = t.table[j]
        if c == EMPTY:
            break
        h = _bucket(np.int64(t.node[c, PARENT]), pages[t.key_start[c]], mask)
        if (j > i and (h <= i or h > j)) or (j < i and h <= i and h > j):  # home not in (i, j]
            t.table[i] = c
            i = j
    t.table[i] = EMPTY


@numba.njit(cache=True)
def _rehash(t, pages):  # type: ignore[no-untyped-def]
    for x in range(1, t.counters[TOP]):
        if t.node[x, SERIAL] >= 0:
            _c, i = _find(t, pages, np.int64(t.node[x, PARENT]), pages[t.key_start[x]])
            t.table[i] = x


# -- the heap of evictable leaves ----------------------------------------------------------------

@numba.njit(cache=True)
def _sift_down(hk, hn, i, n):  # type: ignore[no-untyped-def]
    key, x = hk[i], hn[i]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and hk[child + 1] < hk[child]:
            child += 1
        if key <= hk[child]:
            break
        hk[i] = hk[child]
        hn[i] = hn[child]
        i = child
    hk[i] = key
    hn[i] = x


@numba.njit(cache=True)
def _current(node, key, x):  # type: ignore[no-untyped-def]
    """Heap row ``key`` of slot ``x`` names an evictable leaf: the same node, not touched since,
    no children, unlocked (the checks of ``evict``'s pop)."""
    return (node[x, SERIAL] == (key & LOW32) and node[x, TIME] == (key >> 32) and node[x, CHILDREN] == 0
            and node[x, LOCK] == 0)


@numba.njit(cache=True)
def _compact(t):  # type: ignore[no-untyped-def]
    """Keep the current rows, one per node, and restore the heap order."""
    seen = np.zeros(len(t.node), np.bool_)
    m = np.int64(0)
    for i in range(t.counters[HEAP_LEN]):
        key, x = t.heap_key[i], np.int64(t.heap_node[i])
        if _current(t.node, key, x) and not seen[x]:
            seen[x] = True
            t.heap_key[m] = key
            t.heap_node[m] = x
            m += 1
    t.counters[HEAP_LEN] = m
    for i in range(m // 2 - 1, -1, -1):
        _sift_down(t.heap_key, t.heap_node, i, m)


@numba.njit(cache=True)
def _push(t, x):  # type: ignore[no-untyped-def]
    """``heapq.heappush`` of node ``x`` as it is now. The heap holds twice the node slots, and at
    most one row per node survives compaction, so there is always room after it."""
    if t.counters[HEAP_LEN] == len(t.heap_key):
        _compact(t)
    hk, hn = t.heap_key, t.heap_node
    key = (np.int64(t.node[x, TIME]) << 32) | np.int64(t.node[x, SERIAL])
    i = t.counters[HEAP_LEN]
    t.counters[HEAP_LEN] = i + 1
    while i > 0:
        up = (i - 1) >> 1
        if hk[up] <= key:
            break
        hk[i] = hk[up]
        hn[i] = hn[up]
        i = up
    hk[i] = key
    hn[i] = x


# -- the tree's operations ------------------------------------------------------------------------

@numba.njit(cache=True)
def _new_node(t, parent, start, length, lock, now):  # type: ignore[no-untyped-def]
    """``TreeNode()``: a free slot, the next node id."""
    c = t.counters
    x = c[FREE]
    if x >= 0:
        c[FREE] = t.node[x, PARENT]
    else:
        x = c[TOP]
        c[TOP] = x + 1
    c[LIVE] += 1
    row = t.node[x]
    row[PARENT] = parent
    row[KEY_LEN] = length
    row[LOCK] = lock
    row[TIME] = now
    row[SERIAL] = c[NEXT_ID]
    row[CHILDREN] = 0
    c[NEXT_ID] += 1
    t.key_start[x] = start
    return x


@numba.njit(cache=True)
def _walk(t, pages, base, n, insert):  # type: ignore[no-untyped-def]
    """``_match_prefix_helper`` (insert=False) or ``_insert_helper`` (insert=True) on
    ``pages[base : base + n]``: every node on the path gets this walk's time, a match ending
    inside a node splits it (``_split_node``), an insert adds one leaf for what is new. Returns
    the pages already in the tree and the node where they end (the new leaf, for an insert that
    added one)."""
    c, nd = t.counters, t.node
    c[CLOCK] += 1
    now = c[CLOCK]
    nd[ROOT, TIME] = now
    node = np.int64(ROOT)
    i = np.int64(0)
    while i < n:
        child, pos = _find(t, pages, node, pages[base + i])
        if child == EMPTY:
            break
        nd[child, TIME] = now
        if nd[child, CHILDREN] == 0 and nd[child, LOCK] == 0:
            _push(t, child)
        ks = t.key_start[child]
        kl = np.int64(nd[child, KEY_LEN])
        lim = min(kl, n - i)
        m = np.int64(1)  # the first page is the child's key
        while m < lim and pages[ks + m] == pages[base + i + m]:
            m += 1
        i += m
        if m < kl:  # _split_node: node -> mid(key[:m]) -> child(key[m:]); mid takes child's place
            mid = _new_node(t, node, ks, m, np.int64(nd[child, LOCK]), now)
            t.table[pos] = mid
            nd[mid, CHILDREN] = 1
            t.key_start[child] = ks + m
            nd[child, KEY_LEN] = kl - m
            nd[child, PARENT] = mid
            _c, p = _find(t, pages, mid, pages[ks + m])
            t.table[p] = child
            node = mid
            if not insert:
                break
        else:
            node = child
    if insert and i < n:
        leaf = _new_node(t, node, base + i, n - i, np.int64(0), now)
        _c, pos = _find(t, pages, node, pages[base + i])
        t.table[pos] = leaf
        nd[node, CHILDREN] += 1
        c[PAGES] += n - i
        _push(t, leaf)  # a new leaf, stamped now
        return i, leaf
    return i, node


@numba.njit(cache=True)
def _lock(t, x, delta):  # type: ignore[no-untyped-def]
    """``inc_lock_ref`` / ``dec_lock_ref`` from ``x`` up to the root; a leaf unlocked goes on the heap."""
    nd = t.node
    while x != ROOT:
        nd[x, LOCK] += delta
        if nd[x, LOCK] == 0 and nd[x, CHILDREN] == 0:
            _push(t, x)
        x = np.int64(nd[x, PARENT])


@numba.njit(cache=True)
def _evict(t, pages, want):  # type: ignore[no-untyped-def]
    """``evict``: pop unlocked leaves, least recent first (ties: older node), freeing each whole
    node, until ``want`` pages are freed or none is left; a parent left an unlocked leaf is pushed."""
    c, nd = t.counters, t.node
    freed = np.int64(0)
    while freed < want and c[HEAP_LEN] > 0:
        key = t.heap_key[0]
        x = np.int64(t.heap_node[0])
        n = c[HEAP_LEN] - 1  # heappop
        c[HEAP_LEN] = n
        if n > 0:
            t.heap_key[0] = t.heap_key[n]
            t.heap_node[0] = t.heap_node[n]
            _sift_down(t.heap_key, t.heap_node, np.int64(0), n)
        if not _current(nd, key, x):
            continue  # stale
        p = np.int64(nd[x, PARENT])
        _c, pos = _find(t, pages, p, pages[t.key_start[x]])
        _unlink(t, pages, pos)
        nd[p, CHILDREN] -= 1
        size = np.int64(nd[x, KEY_LEN])
        freed += size
        c[PAGES] -= size
        c[EVICTED] += size
        nd[x, SERIAL] = -1  # free the slot
        nd[x, PARENT] = c[FREE]
        c[FREE] = x
        c[LIVE] -= 1
        if nd[p, CHILDREN] == 0 and nd[p, LOCK] == 0 and p != ROOT:
            _push(t, p)


@numba.njit(cache=True)
def _shape(k, r):  # type: ignore[no-untyped-def]
    """Request ``r``'s (pages to insert, pages it needs with the partial tail, most pages that may
    hit): the scheduler matches the first ``prompt − 1`` tokens, page-aligned."""
    p = k.prompt_tokens[r]
    if k.by_token:
        return p, p, p - 1
    bs = k.block_size
    return p // bs, k.offsets[r + 1] - k.offsets[r], (p - 1) // bs if p > 0 else p


@numba.njit(cache=True)
def serve(requests, start, k, t, cap, cached, unschedulable):  # type: ignore[no-untyped-def]
    """Requests ``requests[start:]`` through the tree with a pool of ``cap`` pages, one at a time
    (``match_prefix``, ``inc_lock_ref``, ``evict``, ``cache_finished_req``'s insert,
    ``dec_lock_ref``). Returns the position of the first request not run: ``len(requests)``, or
    earlier when the node slots must grow first."""
    c = t.counters
    slots = len(t.node)
    unit = 1 if k.by_token else k.block_size
    lock, unlock = np.int64(1), np.int64(-1)
    match, insert = np.bool_(False), np.bool_(True)
    for j in range(start, len(requests)):
        if slots - c[LIVE] < NEW_PER_REQUEST:
            return j
        r = requests[j]
        n_insert, pages, most = _shape(k, r)
        if pages > cap:
            unschedulable[r] = 1  # longer than the pool: never allocated
            continue
        base = k.offsets[r]
        hit, last = np.int64(0), np.int64(ROOT)
        if most > 0:
            hit, last = _walk(t, k.pages, base, most, match)
        cached[r] = hit * unit
        _lock(t, last, lock)
        need = pages - hit
        free = cap - c[PAGES]
        if free < need:
            _evict(t, k.pages, need - free)
        assert cap - c[PAGES] >= need, "eviction could not make room for a request that fits"
        _walk(t, k.pages, base, n_insert, insert)
        _lock(t, last, unlock)
    return len(requests)


@numba.njit(cache=True)
def cached_prefix(t, k, r):  # type: ignore[no-untyped-def]
    """Pages of request ``r``'s page-aligned prompt in the tree, as ``match_prefix`` finds them,
    without stamping or splitting anything (no last-token rule)."""
    n, _pages, _most = _shape(k, r)
    pages, base = k.pages, k.offsets[r]
    node = np.int64(ROOT)
    i = np.int64(0)
    while i < n:
        child, _pos = _find(t, pages, node, pages[base + i])
        if child == EMPTY:
            break
        ks = t.key_start[child]
        kl = np.int64(t.node[child, KEY_LEN])
        lim = min(kl, n - i)
        m = np.int64(1)
        while m < lim and pages[ks + m] == pages[base + i + m]:
            m += 1
        i += m
        if m < kl:
            break
        node = child
    return i


@numba.njit(cache=True)
def held_blocks(t, k, block_offsets, block_ids, num_unique):  # type: ignore[no-untyped-def]
    """The interned ids of the stream's blocks whose pages are all in the tree, ascending."""
    present = np.zeros(num_unique, np.bool_)
    for r in range(len(k.prompt_tokens)):
        n = cached_prefix(t, k, np.int64(r))
        whole = n // k.block_size if k.by_token else n
        for b in range(block_offsets[r], block_offsets[r] + whole):
            present[block_ids[b]] = True
    return np.flatnonzero(present)
