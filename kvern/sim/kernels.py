"""Compiled LRU for one capacity: the ideal block-level model (DESIGN.md §3–4) in O(1) per block.

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

import numba
import numpy as np

from kvern.ingest.stream import BlockStream


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
    r = stream.num_requests
    cached = np.zeros(r, np.int32)
    found = np.zeros(r, np.int32)
    present = np.zeros(stream.num_unique, np.bool_)
    evicted = _lru_kernel(
        np.ascontiguousarray(stream.block_ids, dtype=np.int32),
        np.ascontiguousarray(stream.req_offsets, dtype=np.int64),
        np.ascontiguousarray(stream.prompt_tokens, dtype=np.int32),
        stream.block_size, stream.num_unique, int(capacity_blocks), last_token_rule, cached, found,
        present,
    )
    return LRURun(int(capacity_blocks), cached, found, int(evicted), np.flatnonzero(present))


@numba.njit(cache=True, nogil=True)
def _lru_kernel(ids: np.ndarray, offsets: np.ndarray, prompt: np.ndarray, block_size: int,
                num_unique: int, capacity: int, last_token_rule: bool,
                cached_out: np.ndarray, found_out: np.ndarray, present: np.ndarray) -> int:
    # Recency list: slot num_unique is the sentinel; nxt runs from most to least recent.
    head = num_unique
    nxt = np.empty(num_unique + 1, np.int32)
    prv = np.empty(num_unique + 1, np.int32)
    nxt[head] = head
    prv[head] = head
    size = 0
    evicted = 0
    for r in range(len(offsets) - 1):
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
        # head, DESIGN.md §3), touching tail -> head: each block moves to the front.
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
    return evicted
