"""What a router sees of the fleet at a request's arrival (docs/cluster.md#routers).

Loads follow the time model (``kvern.cluster.timing``): a request is *pending* on its replica
from its arrival until its prefill ends (its uncached tokens are outstanding prefill work) and
*running* until its last output token. ``exact_blocks`` asks every replica's engine how many
leading blocks of a request it holds now, without touching anything: the exact routers route
on it, and the accounting of the approximate routers' errors compares with it.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from kvern.cluster.blocklru import leading, leading_each, presence_list, union_leading
from kvern.ingest.stream import BlockStream
from kvern.sim.engine import CacheEngine
from kvern.sim.profiles.ideal import IdealHeap, IdealLRU
from kvern.sim.profiles.vllm import VllmHeap, VllmQueue


def presence(engine: CacheEngine) -> np.ndarray | None:
    """The engine's per-block presence array (nonzero = cached), read in place; None if it has
    none (then ``cached_prefix`` is asked)."""
    if isinstance(engine, IdealLRU):
        return engine.lru.present
    if isinstance(engine, IdealHeap):
        return engine.cache.cached
    if isinstance(engine, VllmQueue | VllmHeap):
        return engine.copies.count
    return None


class FleetView:
    def __init__(self, stream: BlockStream, engines: list[CacheEngine]) -> None:
        self.stream = stream
        self.n = len(engines)
        self.engines = engines
        self.ids = np.ascontiguousarray(stream.block_ids)
        self.offsets = stream.req_offsets
        self.offset_list: list[int] = stream.req_offsets.tolist()
        self.prompt: list[int] = stream.prompt_tokens.tolist()
        """Prompt tokens of each request (a list: read once per request, faster than numpy's scalars)."""
        self.block_size = stream.block_size
        self.presence = [presence(e) for e in engines]
        self._presence_all = presence_list(self.presence)
        """The presence arrays as one compiled list (None: some engine has none, or mixed types)."""
        self.capacity_blocks = [e.capacity_blocks for e in engines]
        self.now = 0.0
        self.free_at = [0.0] * self.n
        self.pending_tokens = [0] * self.n
        """Uncached prompt tokens of the requests whose prefill has not ended."""
        self.pending = [0] * self.n
        """Requests whose prefill has not ended (queued or prefilling)."""
        self.running = [0] * self.n
        """Requests not finished (prefill or decode)."""
        self.active_blocks = [0] * self.n
        """Blocks of the running requests (prompt and output)."""
        self._pending: list[deque[tuple[float, int]]] = [deque() for _ in range(self.n)]
        self._active: list[list[tuple[float, int]]] = [[] for _ in range(self.n)]
        self._next = math.inf
        """Earliest end (of a prefill or a decode) still to come: before it, ``advance`` has nothing to do."""
        self._exact_r = -1
        self._exact: list[int] = []
        self.last = -1
        """Replica of the previous request: ties are broken cyclically after it (``least``)."""

    def advance(self, t: float) -> None:
        """Move the clock to ``t``: requests whose prefill or decode ended by then leave."""
        self.now = t
        if t < self._next:
            return
        nxt = math.inf
        for i in range(self.n):
            q = self._pending[i]
            while q and q[0][0] <= t:
                _, tok = q.popleft()
                self.pending_tokens[i] -= tok
                self.pending[i] -= 1
            a = self._active[i]
            while a and a[0][0] <= t:
                _, blocks = heapq.heappop(a)
                self.running[i] -= 1
                self.active_blocks[i] -= blocks
            if q and q[0][0] < nxt:
                nxt = q[0][0]
            if a and a[0][0] < nxt:
                nxt = a[0][0]
        self._next = nxt

    def record(self, i: int, work_s: float, uncached: int, decode_s: float, blocks: int) -> None:
        """The request that arrived now went to replica ``i``: ``work_s`` of prefill (transfer
        included) in FIFO order, then ``decode_s`` of decode holding ``blocks``."""
        start = max(self.now, self.free_at[i])
        end = start + work_s
        self.free_at[i] = end
        self._pending[i].append((end, uncached))
        self.pending_tokens[i] += uncached
        self.pending[i] += 1
        heapq.heappush(self._active[i], (end + decode_s, blocks))
        self.running[i] += 1
        self.active_blocks[i] += blocks
        self._next = min(self._next, end, end + decode_s)

    def span(self, r: int) -> tuple[int, int]:
        return self.offset_list[r], self.offset_list[r + 1]

    def exact_blocks(self, r: int) -> list[int]:
        """Leading blocks of request ``r`` each replica holds now (before any last-token rule)."""
        if r != self._exact_r:
            lo, hi = self.span(r)
            if self._presence_all is not None:
                out = leading_each(self.ids, lo, hi, self._presence_all)
            else:
                out = []
                for e, pres in zip(self.engines, self.presence, strict=True):
                    if pres is not None:
                        out.append(leading(self.ids, lo, hi, pres))
                    else:
                        out.append(min(e.cached_prefix(r) // self.block_size, hi - lo))
            self._exact_r, self._exact = r, out
        return self._exact

    def union_blocks(self, r: int) -> int:
        """Leading blocks of ``r`` held by the fleet as a whole (each block on some replica)."""
        k = max(self.exact_blocks(r))
        if self._presence_all is None:
            if any(p is None for p in self.presence):
                return k
            lo, hi = self.span(r)
            while lo + k < hi:
                b = self.ids[lo + k]
                if not any(p[b] for p in self.presence):  # type: ignore[index]
                    break
                k += 1
            return k
        lo, hi = self.span(r)
        return union_leading(self.ids, lo, hi, k, self._presence_all)

    def tokens(self, r: int, blocks: int) -> int:
        """``blocks`` leading blocks of ``r`` in tokens (the whole prompt when all are found)."""
        lo, hi = self.offset_list[r], self.offset_list[r + 1]
        p = self.prompt[r]
        return p if blocks >= hi - lo else min(blocks * self.block_size, p)


def least(values: list[int] | list[float], among: list[int] | None = None, after: int = -1) -> int:
    """Index of the smallest value (among ``among``); on a tie the first index after ``after``,
    cyclically (with ``after`` = the previous request's replica, ties rotate like round-robin)."""
    n = len(values)
    if among is None and isinstance(values, list):  # the same rule, in C: the first smallest in rotated order
        start = (after + 1) % n
        rotated = values[start:] + values[:start]
        return (start + rotated.index(min(rotated))) % n
    return min(among, key=lambda i: (values[i], (i - after - 1) % n))
