"""Compiled LRU: the ideal block-level model (docs/architecture.md §3–4) in O(1) per block.

The policy-generic simulator ranks evictable leaves by a priority; for LRU that work is
unnecessary. A request touches its blocks tail → head, so a prefix is always more recent than
its extensions, and the least recently used block never has a cached child: it is always an
evictable leaf. An intrusive doubly linked recency list over the dense block ids (two int32
links and a flag: 9 bytes per unique block) is then the whole state, and every step is O(1).
The result is identical to ranking leaves by last use (ties cannot occur: every touch gets
its own time), which the tests check against a naive leaf-scanning model and the curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numba
import numpy as np

from kvern.ingest.stream import BlockStream
from kvern.sim.engine import CacheEngine
from kvern.sim.policies import Policy, make_policy

SIZE, EVICTED, LOGGED = 0, 1, 2
"""The recency list's counters, by name."""


class RecencyList(NamedTuple):
    """Slot ``U`` (one past the last block id) is the sentinel; ``nxt`` runs from most to least recent."""

    nxt: np.ndarray
    """int32[U+1]"""
    prv: np.ndarray
    """int32[U+1]"""
    present: np.ndarray
    """bool[U]"""
    counters: np.ndarray
    """int64[3]: SIZE, EVICTED, LOGGED."""
    log: np.ndarray
    """int64[L]: the ids evicted since the last ``take_evicted`` (empty: the log is off)."""


class LRUEngine(CacheEngine):
    """The ideal model under LRU, optionally with the last-token rule (for the curve's checks)."""

    profile: ClassVar[str] = "ideal"
    _log_state = "lru"
    _log_slot = LOGGED

    def __init__(self, stream: BlockStream, policy: Policy, capacity_blocks: int, *,
                 last_token_rule: bool = False) -> None:
        super().__init__(stream, policy, capacity_blocks)
        u = stream.num_unique
        nxt = np.empty(u + 1, np.int32)
        prv = np.empty(u + 1, np.int32)
        nxt[u] = prv[u] = u
        self.lru = RecencyList(nxt, prv, np.zeros(u, np.bool_), np.zeros(3, np.int64),
                               np.zeros(0, np.int64))
        self.last_token_rule = last_token_rule
        self.found_blocks = np.zeros(stream.num_requests, np.int32)
        """int32[R]: leading blocks found at arrival (the cached prefix, before any cap)."""
        self._ids = np.ascontiguousarray(stream.block_ids, dtype=np.int32)
        self._offsets = np.ascontiguousarray(stream.req_offsets, dtype=np.int64)
        self._prompt = np.ascontiguousarray(stream.prompt_tokens, dtype=np.int32)

    def serve(self, requests: np.ndarray) -> None:
        self._log_room(requests)
        self._call(_serve, requests, self._ids, self._offsets, self._prompt, self.stream.block_size,
                   self.capacity_blocks, self.last_token_rule, self.lru, self.cached_tokens,
                   self.found_blocks)

    def cached_prefix(self, request: int) -> int:
        blocks, present = self.stream.blocks_of(request), self.lru.present
        k = 0
        while k < len(blocks) and present[blocks[k]]:
            k += 1
        return self._prefix_tokens(request, k)

    def cached_blocks(self) -> np.ndarray:
        return np.flatnonzero(self.lru.present)

    @property
    def used(self) -> int:
        return int(self.lru.counters[SIZE])

    @property
    def evicted_blocks(self) -> int:
        return int(self.lru.counters[EVICTED])


@dataclass(frozen=True, slots=True)
class LRURun:
    """Per-request results of one LRU run at one capacity."""

    capacity_blocks: int
    cached_tokens: np.ndarray
    """int32[R]: tokens served from the cache, after the last-token cap where it applies."""
    found_blocks: np.ndarray
    """int32[R]: leading blocks found at arrival (the cached prefix, before any cap)."""
    evicted_blocks: int
    """Blocks dropped to make room (a long request's blocks beyond the capacity are never
    admitted, so they do not count)."""
    final_cache: np.ndarray
    """int64[]: ids of the blocks cached after the last request, ascending."""


def lru_run(stream: BlockStream, capacity_blocks: int, *, last_token_rule: bool = False) -> LRURun:
    """Simulate LRU at ``capacity_blocks`` over ``stream`` under the ideal block-level model."""
    if capacity_blocks < 0:
        raise ValueError(f"capacity must be ≥ 0 blocks, got {capacity_blocks}")
    engine = LRUEngine(stream, make_policy("lru"), max(int(capacity_blocks), 1),
                       last_token_rule=last_token_rule)
    engine.capacity_blocks = int(capacity_blocks)  # 0 is a valid point of the curve: nothing admitted
    engine.serve(np.arange(stream.num_requests, dtype=np.int64))
    return LRURun(int(capacity_blocks), engine.cached_tokens.astype(np.int32), engine.found_blocks,
                  engine.evicted_blocks, engine.cached_blocks())


@numba.njit(cache=True, nogil=True)
def _serve(requests: np.ndarray, ids: np.ndarray, offsets: np.ndarray, prompt: np.ndarray, block_size: int,
           capacity: int, last_token_rule: bool, lru: RecencyList, cached_out: np.ndarray,
           found_out: np.ndarray) -> None:
    nxt, prv, present = lru.nxt, lru.prv, lru.present
    head = len(present)
    size = lru.counters[SIZE]
    evicted = lru.counters[EVICTED]
    log = lru.log
    logged = lru.counters[LOGGED]
    for r in requests:
        s = offsets[r]
        e = offsets[r + 1]
        found = 0
        while s + found < e and present[ids[s + found]]:
            found += 1
        p = prompt[r]
        tok = p if found == e - s else min(found * block_size, p)
        if last_token_rule:
            tok = min(tok, p - 1)
        cached_out[r] = max(tok, 0)
        found_out[r] = found
        # Admit the request's leading min(n, capacity) blocks (a longer request keeps only its
        # head, docs/architecture.md §3), touching tail -> head: each block moves to the front.
        m = min(e - s, capacity)
        for i in range(s + m - 1, s - 1, -1):
            b = ids[i]
            if present[b]:
                a = prv[b]
                c = nxt[b]
                nxt[a] = c
                prv[c] = a
            else:
                present[b] = True
                size += 1
            first = nxt[head]
            nxt[b] = first
            prv[b] = head
            prv[first] = b
            nxt[head] = b
        # Evict from the least recent end: always a leaf, see the module docstring.
        while size > capacity:
            v = prv[head]
            a = prv[v]
            nxt[a] = head
            prv[head] = a
            present[v] = False
            size -= 1
            evicted += 1
            if len(log) > 0:
                log[logged] = v
                logged += 1
    lru.counters[SIZE] = size
    lru.counters[EVICTED] = evicted
    lru.counters[LOGGED] = logged
