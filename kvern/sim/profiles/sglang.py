"""``sglang``: SGLang's ``RadixCache`` (sgl-project/sglang ``python/sglang/srt/mem_cache/``).

What it reproduces, from ``radix_cache.py`` and ``common.py``:

* **Tree.** A radix tree whose nodes hold runs of pages; a child is keyed by its first page
  (``get_child_key``). With token ids in the trace (tokenized logs) the page is one token,
  SGLang's default ``--page-size 1``, and the pool holds ``capacity_blocks × block_size``
  tokens. For hash-id traces (Mooncake's 512-token ids) the tokens inside a hash id are
  unknown, so SGLang is simulated at the trace's block granularity, as if run with
  ``--page-size`` equal to it; then a page is one block and the pool ``capacity_blocks`` pages.
* **Lookup.** The scheduler matches the first ``prompt_tokens − 1`` tokens (the last one is
  recomputed), and ``match_prefix`` truncates that to whole pages: at most
  ``(prompt_tokens − 1) // page`` pages hit. ``_match_prefix_helper`` stamps every node on
  the path with the access time and, when the match ends inside a node, splits it there
  (``_split_node``) — so node boundaries, and with them eviction granularity, follow the
  requests.
* **Allocation.** The matched path is locked (``inc_lock_ref``); the request needs
  ``ceil(prompt / page) − hits`` new pages. When fewer are free, ``evict_from_tree_cache``
  evicts the shortfall: ``evict`` pops unlocked leaf nodes in order of least recent access,
  frees each whole node (possibly more pages than needed) and pushes a parent that became an
  unlocked leaf. A prompt longer than the pool can never be allocated: unschedulable.
* **Finish.** ``cache_finished_req`` inserts the page-aligned prompt (``_insert_helper``
  stamps, splits where needed and adds one new leaf for the new part), frees the pages the
  tree already had (SGLang deduplicates, unlike vLLM) and the unaligned tail, and unlocks.

Only ``lru`` (SGLang's default ``--radix-eviction-policy``) is offered: SGLang's other
strategies rank nodes by fields this model does not track.
"""

from __future__ import annotations

from heapq import heappop, heappush

import numpy as np

from kvern.ingest.stream import BlockStream
from kvern.sim.engine import CacheEngine
from kvern.sim.policies import Policy
from kvern.sim.profiles.base import Profile, register


class _Node:
    __slots__ = ("children", "id", "key", "lock", "parent", "time", "version")

    def __init__(self, node_id: int, key: np.ndarray, parent: _Node | None, time: int) -> None:
        self.id = node_id
        self.key = key
        """The pages this node holds (token ids, or interned block ids)."""
        self.parent = parent
        self.children: dict[int, _Node] = {}
        self.lock = 0
        self.time = time
        self.version = 0


@register
class SGLang(Profile):
    name = "sglang"
    summary = "SGLang RadixCache: radix tree of pages, last token recomputed, LRU leaves"
    policies = frozenset({"lru"})

    def engine(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> CacheEngine:
        assert policy.name == "lru", "the sglang profile evicts by LRU only"
        return RadixEngine(stream, policy, capacity_blocks)


class RadixEngine(CacheEngine):
    """``RadixCache`` fed one request at a time (``match_prefix``, evict, ``cache_finished_req``)."""

    profile = "sglang"

    def __init__(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> None:
        super().__init__(stream, policy, capacity_blocks)
        self.tree = _RadixTree()
        self.by_token = stream.token_ids is not None
        """Pages of one token (tokenized logs); else pages of one block (hash-id traces)."""
        self.capacity_pages = self.capacity_blocks * (stream.block_size if self.by_token else 1)

    def _key(self, r: int) -> tuple[np.ndarray, int, int, int]:
        """(the pages to insert, their count with the tail, the most that may hit, tokens per page)."""
        s = self.stream
        p_tokens = int(s.prompt_tokens[r])
        if self.by_token:
            key = s.tokens_of(r).astype(np.int64)
            assert len(key) == p_tokens, "token ids and prompt_tokens disagree"
            return key, p_tokens, p_tokens - 1, 1
        blocks = s.blocks_of(r).astype(np.int64)
        # page-aligned: the partial tail is never inserted
        return blocks[: p_tokens // s.block_size], len(blocks), (p_tokens - 1) // s.block_size, s.block_size

    def serve(self, requests: np.ndarray) -> None:
        tree, cap = self.tree, self.capacity_pages
        for r in requests.tolist():
            key, pages, max_hit, unit = self._key(r)
            if pages > cap:
                self.unschedulable[r] = 1
                continue
            hit, last = tree.walk(key[:max_hit], insert=False) if max_hit > 0 else (0, tree.root)
            self.cached_tokens[r] = hit * unit
            tree.lock(last, +1)
            need = pages - hit
            free = cap - tree.pages
            if free < need:
                tree.evict(need - free)
            assert cap - tree.pages >= need, "eviction could not make room for a request that fits"
            tree.walk(key, insert=True)
            tree.lock(last, -1)

    def cached_prefix(self, request: int) -> int:
        key, _pages, _max_hit, unit = self._key(request)
        return self.tree.match_len(key) * unit

    def cached_blocks(self) -> np.ndarray:
        """The interned ids of the whole blocks the tree holds (on a token tree: of the stream's
        blocks, those whose tokens are all in the tree)."""
        s = self.stream
        held = set()
        for r in range(s.num_requests):
            n = self.cached_prefix(r) // s.block_size
            held.update(s.blocks_of(r)[:n].tolist())
        return np.array(sorted(held), dtype=np.int64)

    @property
    def used(self) -> int:
        """Pages in the tree."""
        return self.tree.pages

    @property
    def evicted_blocks(self) -> int:
        """Pages evicted."""
        return self.tree.evicted


def _common_prefix(ck: np.ndarray, key: np.ndarray, i: int) -> int:
    """Length of the common prefix of ``ck`` and ``key[i:]`` (short runs in Python, long in numpy)."""
    lim = min(len(ck), len(key) - i)
    if lim <= 32:
        m = 0
        while m < lim and ck[m] == key[i + m]:
            m += 1
        return m
    diff = np.flatnonzero(ck[:lim] != key[i : i + lim])
    return int(diff[0]) if len(diff) else lim


class _RadixTree:
    """The mechanics of ``RadixCache`` that decide what is cached (no KV indices)."""

    def __init__(self) -> None:
        self.root = _Node(0, np.zeros(0, dtype=np.int64), None, 0)
        self.root.lock = 1
        self.clock = 0
        self.next_id = 1
        self.pages = 0
        self.evicted = 0
        self.heap: list = []
        """Lazy heap of (last access, node id, version, node) for unlocked leaves."""

    def _stamp(self, node: _Node, t: int) -> None:
        node.time = t
        node.version += 1
        if not node.children and node.lock == 0 and node is not self.root:
            heappush(self.heap, (t, node.id, node.version, node))

    def _split(self, child: _Node, at: int, t: int) -> _Node:
        """``_split_node``: ``parent -> mid(key[:at]) -> child(key[at:])``."""
        parent = child.parent
        assert parent is not None, "split of the root"
        mid = _Node(self.next_id, child.key[:at], parent, t)
        self.next_id += 1
        mid.lock = child.lock
        mid.children = {int(child.key[at]): child}
        parent.children[int(child.key[0])] = mid
        child.key = child.key[at:]
        child.parent = mid
        return mid

    def walk(self, key: np.ndarray, insert: bool) -> tuple[int, _Node]:
        """``_match_prefix_helper`` (insert=False) or ``_insert_helper`` (insert=True).

        Returns the pages already in the tree and the node where they end (the new leaf, for an
        insert that added one). Every node on the path gets this walk's access time.
        """
        self.clock += 1
        t = self.clock
        node = self.root
        node.time = t
        i, n = 0, len(key)
        while i < n:
            child = node.children.get(int(key[i]))
            if child is None:
                break
            self._stamp(child, t)
            ck = child.key
            m = _common_prefix(ck, key, i)
            i += m
            if m < len(ck):
                node = self._split(child, m, t)
                if not insert:
                    break
            else:
                node = child
        if insert and i < n:
            leaf = _Node(self.next_id, key[i:], node, t)
            self.next_id += 1
            node.children[int(key[i])] = leaf
            self.pages += n - i
            self._stamp(leaf, t)
            return i, leaf
        return i, node

    def match_len(self, key: np.ndarray) -> int:
        """Pages of ``key`` in the tree, as ``match_prefix`` would find them, without stamping
        or splitting anything."""
        node, i, n = self.root, 0, len(key)
        while i < n:
            child = node.children.get(int(key[i]))
            if child is None:
                break
            m = _common_prefix(child.key, key, i)
            i += m
            if m < len(child.key):
                break
            node = child
        return i

    def lock(self, node: _Node | None, delta: int) -> None:
        """``inc_lock_ref`` / ``dec_lock_ref`` from ``node`` up to the root."""
        while node is not None and node is not self.root:
            node.lock += delta
            if node.lock == 0 and not node.children:
                heappush(self.heap, (node.time, node.id, node.version, node))
            node = node.parent

    def evict(self, pages: int) -> None:
        """``evict``: whole unlocked leaves, least recent first, until ``pages`` are freed."""
        freed = 0
        while freed < pages and self.heap:
            _t, _id, v, x = heappop(self.heap)
            if v != x.version or x.children or x.lock or x.parent is None:
                continue
            parent = x.parent
            del parent.children[int(x.key[0])]
            x.parent = None
            x.version += 1
            freed += len(x.key)
            self.pages -= len(x.key)
            self.evicted += len(x.key)
            if not parent.children and parent.lock == 0 and parent is not self.root:
                heappush(self.heap, (parent.time, parent.id, parent.version, parent))
