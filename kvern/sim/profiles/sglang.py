"""``sglang``: SGLang's ``RadixCache`` (sgl-project/sglang ``python/sglang/srt/mem_cache/``).

What it reproduces, from ``radix_cache.py`` and ``common.py``:

* **Tree.** A radix tree whose nodes hold runs of pages; a child is keyed by its first page
  (``get_child_key``). Here a page is one block of the trace: for hash-id traces (Mooncake's
  512-token ids) SGLang is simulated at the trace's block granularity, as if run with
  ``--page-size`` equal to it, because the tokens inside a hash id are unknown. For tokenized
  traces this is ``--page-size block_size`` (16 by default); SGLang's default page size 1
  differs from it by the partial tail only (see the README).
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

from kvern.sim.policies import Policy, PolicyContext
from kvern.sim.profiles.base import PROGRESS_EVERY, Advance, Profile, register
from kvern.sim.result import SimResult
from kvern.sim.stream import BlockStream


class _Node:
    __slots__ = ("children", "id", "key", "lock", "parent", "time", "version")

    def __init__(self, node_id: int, key: list[int], parent: _Node | None, time: int) -> None:
        self.id = node_id
        self.key = key
        """The pages (interned block ids) this node holds."""
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

    def simulate(self, stream: BlockStream, policy: Policy, capacity_blocks: int,
                 advance: Advance | None = None) -> SimResult:
        assert policy.name == "lru", "the sglang profile evicts by LRU only"
        cap = int(capacity_blocks)
        assert cap >= 1, "capacity must be at least one block"
        policy.bind(PolicyContext(stream, 0))
        num_req = stream.num_requests
        offs = stream.req_offsets.tolist()
        ids = stream.block_ids.tolist()
        prompt = stream.prompt_tokens.tolist()
        bs = stream.block_size

        clock = 0
        next_id = 1
        root = _Node(0, [], None, 0)
        root.lock = 1
        heap: list = []
        tree_pages = 0
        evicted = 0
        cached = [0] * num_req
        unschedulable = np.zeros(num_req, dtype=bool)

        def stamp(node: _Node, t: int) -> None:
            node.time = t
            node.version += 1
            if not node.children and node.lock == 0 and node is not root:
                heappush(heap, (t, node.id, node.version, node))

        def split(child: _Node, at: int, t: int) -> _Node:
            nonlocal next_id
            parent = child.parent
            assert parent is not None, "split of the root"
            mid = _Node(next_id, child.key[:at], parent, t)
            next_id += 1
            mid.lock = child.lock
            mid.children = {child.key[at]: child}
            parent.children[child.key[0]] = mid
            child.key = child.key[at:]
            child.parent = mid
            return mid

        def walk(key: list[int], insert: bool) -> tuple[int, _Node]:
            """``_match_prefix_helper`` (insert=False) / ``_insert_helper`` (insert=True)."""
            nonlocal clock, next_id, tree_pages
            clock += 1
            t = clock
            node = root
            root.time = t
            i, n = 0, len(key)
            while i < n:
                child = node.children.get(key[i])
                if child is None:
                    break
                stamp(child, t)
                ck = child.key
                m, lim = 0, min(len(ck), n - i)
                while m < lim and ck[m] == key[i + m]:
                    m += 1
                i += m
                if m < len(ck):
                    node = split(child, m, t)
                    if not insert:
                        break
                else:
                    node = child
            if insert and i < n:
                leaf = _Node(next_id, key[i:], node, t)
                next_id += 1
                node.children[key[i]] = leaf
                tree_pages += n - i
                stamp(leaf, t)
                return i, leaf
            return i, node

        def lock(node: _Node | None, delta: int) -> None:
            while node is not None and node is not root:
                node.lock += delta
                if node.lock == 0 and not node.children:
                    heappush(heap, (node.time, node.id, node.version, node))
                node = node.parent

        def evict(pages: int) -> None:
            nonlocal tree_pages, evicted
            freed = 0
            while freed < pages and heap:
                _t, _id, v, x = heappop(heap)
                if v != x.version or x.children or x.lock or x.parent is None:
                    continue
                parent = x.parent
                del parent.children[x.key[0]]
                x.parent = None
                x.version += 1
                freed += len(x.key)
                tree_pages -= len(x.key)
                evicted += len(x.key)
                if not parent.children and parent.lock == 0 and parent is not root:
                    heappush(heap, (parent.time, parent.id, parent.version, parent))

        for r in range(num_req):
            lo, hi = offs[r], offs[r + 1]
            n = hi - lo  # pages the running request holds, partial tail included
            if n > cap:
                unschedulable[r] = True
                continue
            p_tokens = prompt[r]
            full = p_tokens // bs
            key = ids[lo : lo + full]
            max_hit = (p_tokens - 1) // bs
            hit, last = walk(key[:max_hit], insert=False) if max_hit > 0 else (0, root)
            cached[r] = hit * bs
            lock(last, +1)
            need = n - hit
            free = cap - tree_pages
            if free < need:
                evict(need - free)
            assert cap - tree_pages >= need, "eviction could not make room for a request that fits"
            walk(key, insert=True)
            lock(last, -1)
            if advance is not None and (r + 1) % PROGRESS_EVERY == 0:
                advance(PROGRESS_EVERY)
        if advance is not None:
            advance(num_req % PROGRESS_EVERY)
        self.tree_pages = tree_pages
        self.root = root
        return SimResult(
            model=stream.model, policy=policy.name, policy_label=policy.display_name, profile=self.name,
            capacity_blocks=cap, block_size=bs,
            prompt_tokens=stream.prompt_tokens.astype(np.int64),
            cached_tokens=np.asarray(cached, dtype=np.int64),
            unschedulable=unschedulable,
            evicted_blocks=evicted,
        )
