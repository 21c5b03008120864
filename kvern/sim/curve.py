"""One-pass LRU hit-rate curve: hits at every capacity from stack distances (Mattson et al. 1970).

Why it works for prefix caching (DESIGN.md §3–4, the ``ideal`` block-level model):

* LRU touches a request's blocks tail → head, so a prefix is always more recent than any of
  its extensions. The least recently used block therefore never has a cached child: plain LRU
  over the flattened block stream already evicts only leaves, and prefix closure holds.
* After every request the cache holds exactly the ``min(C, seen)`` most recent blocks (the
  request is admitted whole, then the least recent go until at most ``C`` remain). A block is
  present at a request's arrival iff its *stack distance* — the number of distinct blocks
  touched since its own last touch, itself included, counted before the request touches
  anything — is ≤ ``C``. This holds for every ``C`` at once, the inclusion property.
* The cached prefix at capacity ``C`` is the leading run of blocks with distance ≤ ``C``, so
  each request adds a step function of ``C`` to the totals; the steps are accumulated in
  histograms indexed by distance and a cumulative sum gives every capacity.

Distances come from a Fenwick tree over access times holding a 1 at each block's latest
touch: O(log U) per block access. Time slots are renumbered (compacted) when they run out, so
the state is O(unique blocks), not O(accesses): about 20 bytes per unique block plus four
histograms of 8 bytes each.

The last-token cap (``cached ≤ prompt_tokens − 1``) only changes what a request counts, not
what the cache holds, so it applies per request here exactly as in the simulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from kvern.sim.stream import BlockStream


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """LRU totals at one capacity, the same quantities a single simulation reports."""

    capacity_blocks: int
    requests: int
    prompt_tokens: int
    cached_tokens: int
    hit_requests: int
    hit_ratio_sum: float
    hit_blocks: int
    evicted_blocks: int

    @property
    def token_hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def request_hit_rate(self) -> float:
        return self.hit_requests / self.requests if self.requests else 0.0

    @property
    def mean_request_hit_ratio(self) -> float:
        return self.hit_ratio_sum / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class LRUCurve:
    """LRU results for every capacity ``C = 0 .. num_unique`` of one model's stream.

    Index ``C`` of each array is the total at a cache of ``C`` blocks; any capacity above
    ``num_unique`` equals the last entry (the infinite cache).
    """

    model: str
    block_size: int
    last_token_rule: bool
    requests: int
    prompt_tokens: int
    accesses: int
    """Block accesses in the stream (Σ blocks per request)."""
    cached_tokens: np.ndarray
    """int64[U+1]"""
    hit_requests: np.ndarray
    """int64[U+1]: requests with at least one cached token."""
    hit_ratio_sum: np.ndarray
    """float64[U+1]: Σ cached/prompt over requests (mean per-request ratio × requests)."""
    hit_blocks: np.ndarray
    """int64[U+1]: blocks found in the cache at arrival (the cached prefixes)."""

    @property
    def num_unique(self) -> int:
        return len(self.cached_tokens) - 1

    @property
    def capacities(self) -> np.ndarray:
        return np.arange(self.num_unique + 1, dtype=np.int64)

    @property
    def token_hit_rate(self) -> np.ndarray:
        return self.cached_tokens / max(self.prompt_tokens, 1)

    def at(self, capacity_blocks: int) -> CurvePoint:
        """The totals at one capacity (any value ≥ 0; above ``num_unique`` = infinite)."""
        if capacity_blocks < 0:
            raise ValueError(f"capacity must be ≥ 0 blocks, got {capacity_blocks}")
        c = min(int(capacity_blocks), self.num_unique)
        hit_blocks = int(self.hit_blocks[c])
        # Every access that was not found is inserted; all but the final contents are evicted.
        evicted = (self.accesses - hit_blocks) - min(int(capacity_blocks), self.num_unique)
        return CurvePoint(
            capacity_blocks=int(capacity_blocks),
            requests=self.requests,
            prompt_tokens=self.prompt_tokens,
            cached_tokens=int(self.cached_tokens[c]),
            hit_requests=int(self.hit_requests[c]),
            hit_ratio_sum=float(self.hit_ratio_sum[c]),
            hit_blocks=hit_blocks,
            evicted_blocks=evicted,
        )

    def capacity_for(self, cached_tokens: int) -> int | None:
        """Smallest capacity in blocks whose cached tokens reach ``cached_tokens`` (None: never)."""
        idx = int(np.searchsorted(self.cached_tokens, cached_tokens, side="left"))
        return idx if idx <= self.num_unique else None


def lru_curve(stream: BlockStream, *, last_token_rule: bool = False) -> LRUCurve:
    """The LRU curve of ``stream`` under the ideal block-level model, in one pass.

    ``last_token_rule`` caps each request's cached tokens at ``prompt_tokens − 1``.
    """
    u = stream.num_unique
    hist = _Hist.empty(u)
    offsets = np.ascontiguousarray(stream.req_offsets, dtype=np.int64)
    ids = np.ascontiguousarray(stream.block_ids, dtype=np.int32)
    prompt = np.ascontiguousarray(stream.prompt_tokens, dtype=np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= u):
        raise ValueError("block ids must be interned to 0..num_unique-1")
    _stack_distances(ids, offsets, prompt, stream.block_size, u, last_token_rule,
                     hist.tokens, hist.requests, hist.ratio, hist.blocks)
    return LRUCurve(
        model=stream.model,
        block_size=stream.block_size,
        last_token_rule=last_token_rule,
        requests=stream.num_requests,
        prompt_tokens=int(prompt.sum()),
        accesses=len(ids),
        cached_tokens=np.cumsum(hist.tokens),
        hit_requests=np.cumsum(hist.requests),
        hit_ratio_sum=np.cumsum(hist.ratio),
        hit_blocks=np.cumsum(hist.blocks),
    )


@dataclass(frozen=True, slots=True)
class _Hist:
    """Per stack distance d (1..U): what requests gain when the capacity reaches d."""

    tokens: np.ndarray
    requests: np.ndarray
    ratio: np.ndarray
    blocks: np.ndarray

    @classmethod
    def empty(cls, u: int) -> _Hist:
        return cls(np.zeros(u + 1, np.int64), np.zeros(u + 1, np.int64),
                   np.zeros(u + 1, np.float64), np.zeros(u + 1, np.int64))


# -- compiled kernel ---------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _fenwick_add(tree: np.ndarray, pos: int, delta: int) -> None:
    i = pos + 1
    n = len(tree)
    while i < n:
        tree[i] += delta
        i += i & -i


@numba.njit(cache=True, nogil=True)
def _fenwick_before(tree: np.ndarray, pos: int) -> int:
    """Marks at time slots ``< pos``."""
    s = 0
    i = pos
    while i > 0:
        s += tree[i]
        i -= i & -i
    return s


@numba.njit(cache=True, nogil=True)
def _compact(tree: np.ndarray, owner: np.ndarray, last: np.ndarray, now: int) -> int:
    """Renumber the live time slots to 0..live-1 in order and rebuild the tree in O(T)."""
    live = 0
    for t in range(now):
        b = owner[t]
        if b >= 0:
            owner[t] = -1
            owner[live] = b
            last[b] = live
            live += 1
    tree[:] = 0
    for i in range(1, live + 1):
        tree[i] = 1
    n = len(tree)
    for i in range(1, n):
        j = i + (i & -i)
        if j < n:
            tree[j] += tree[i]
    return live


@numba.njit(cache=True, nogil=True)
def _stack_distances(ids: np.ndarray, offsets: np.ndarray, prompt: np.ndarray, block_size: int,
                     num_unique: int, last_token_rule: bool, h_tokens: np.ndarray,
                     h_requests: np.ndarray, h_ratio: np.ndarray, h_blocks: np.ndarray) -> None:
    num_req = len(offsets) - 1
    max_len = 0
    for r in range(num_req):
        max_len = max(max_len, offsets[r + 1] - offsets[r])
    slots = max(2 * num_unique, num_unique + max_len) + 1
    tree = np.zeros(slots + 1, np.int32)
    owner = np.full(slots, -1, np.int32)
    last = np.full(num_unique, -1, np.int32)
    dist = np.empty(max_len, np.int64)
    now = 0
    live = 0
    for r in range(num_req):
        s = offsets[r]
        n = offsets[r + 1] - s
        if now + n > slots:
            now = _compact(tree, owner, last, now)
        # Lookup at arrival: distances before this request touches anything.
        found = 0
        run_max = 0
        for j in range(n):
            t = last[ids[s + j]]
            if t < 0:
                break  # never seen: the cached prefix ends here at every capacity
            d = live - _fenwick_before(tree, t)
            run_max = max(run_max, d)
            dist[j] = run_max
            found += 1
        p = prompt[r]
        cap = p - 1 if last_token_rule else p
        prev = 0
        for j in range(found):
            d = dist[j]
            h_blocks[d] += 1
            tok = min((j + 1) * block_size, p, cap)
            if tok > prev:
                h_tokens[d] += tok - prev
                h_ratio[d] += (tok - prev) / p
                if prev == 0:
                    h_requests[d] += 1
                prev = tok
        # Admission: touch tail -> head so the prefix ends up more recent than its extensions.
        for j in range(n - 1, -1, -1):
            b = ids[s + j]
            t = last[b]
            if t >= 0:
                _fenwick_add(tree, t, -1)
                owner[t] = -1
            else:
                live += 1
            _fenwick_add(tree, now, 1)
            owner[now] = b
            last[b] = now
            now += 1
