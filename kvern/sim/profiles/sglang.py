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

The tree is compiled over flat arrays (``kvern.sim.profiles.radix_kernel``). Access times
are walk numbers, so the nodes of one walk tie; ``evict`` takes the older node (lower id) first.
"""

from __future__ import annotations

import numpy as np

import kvern.sim.profiles.radix_kernel as rk
from kvern.ingest.stream import BlockStream
from kvern.sim.engine import CacheEngine
from kvern.sim.policies import Policy
from kvern.sim.profiles.base import Profile, register


@register
class SGLang(Profile):
    name = "sglang"
    uses_tokens = True
    summary = "SGLang RadixCache: radix tree of pages, last token recomputed, LRU leaves"
    policies = frozenset({"lru"})

    def engine(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> CacheEngine:
        assert policy.name == "lru", "the sglang profile evicts by LRU only"
        return RadixEngine(stream, policy, capacity_blocks)


class RadixEngine(CacheEngine):
    """``RadixCache`` fed a chunk of requests per ``serve``, one at a time (``match_prefix``,
    evict, ``cache_finished_req``)."""

    profile = "sglang"

    def __init__(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> None:
        super().__init__(stream, policy, capacity_blocks)
        self.keys = rk.radix_keys(stream)
        self.by_token = self.keys.by_token
        """Pages of one token (tokenized logs); else pages of one block (hash-id traces)."""
        self.capacity_pages = self.capacity_blocks * (stream.block_size if self.by_token else 1)
        self.tree = rk.new_tree()

    def serve(self, requests: np.ndarray) -> None:
        requests = np.ascontiguousarray(requests, dtype=np.int64)
        done = 0
        while True:
            done = rk.serve(requests, done, self.keys, self.tree, self.capacity_pages, self.cached_tokens,
                            self.unschedulable)
            if done == len(requests):
                return
            self.tree = rk.grown(self.tree, self.keys.pages)

    def cached_prefix(self, request: int) -> int:
        """Tokens of the page-aligned prompt in the tree (``match_prefix`` without its side effects)."""
        pages = int(rk.cached_prefix(self.tree, self.keys, np.int64(request)))
        return pages if self.by_token else pages * self.stream.block_size

    def cached_blocks(self) -> np.ndarray:
        """The interned ids of the whole blocks the tree holds (on a token tree: of the stream's
        blocks, those whose tokens are all in the tree)."""
        s = self.stream
        return rk.held_blocks(self.tree, self.keys, np.ascontiguousarray(s.req_offsets, dtype=np.int64),
                              s.block_ids, s.num_unique)

    @property
    def used(self) -> int:
        """Pages in the tree."""
        return int(self.tree.counters[rk.PAGES])

    @property
    def evicted_blocks(self) -> int:
        """Pages evicted."""
        return int(self.tree.counters[rk.EVICTED])
