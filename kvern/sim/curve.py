"""One-pass LRU hit-rate curve: hits at every capacity from stack distances (Mattson et al. 1970).

Why it works for prefix caching (docs/architecture.md §3–4, the ``ideal`` block-level model):

* LRU touches a request's blocks tail → head, so a prefix is always more recent than any of
  its extensions. The least recently used block therefore never has a cached child: plain LRU
  over the flattened block stream already evicts only leaves, and prefix closure holds.
* After every request the cache holds exactly the ``min(C, seen)`` most recent blocks (the
  request's leading ``min(n, C)`` blocks are admitted, then the least recent go until at most
  ``C`` remain). A block is
  present at a request's arrival iff its *stack distance* — the number of distinct blocks
  touched since its own last touch, itself included, counted before the request touches
  anything — is ≤ ``C``. This holds for every ``C`` at once, the inclusion property.
* The cached prefix at capacity ``C`` is the leading run of blocks with distance ≤ ``C``, so
  each request adds a step function of ``C`` to the totals; the steps are accumulated in
  histograms indexed by distance and a cumulative sum gives every capacity.

Distances are counts of live marks over access times, one mark at each block's latest touch
(see the kernel below: O(1) to move a mark, a count of at most 63 entries per level of 64
where a prefix's run of blocks starts, so O(blocks · log unique) at worst, as a Fenwick tree,
and close to O(blocks) on real traces). Time slots are renumbered (compacted) when they run
out, so the state is O(unique blocks), not O(accesses): at most 24 bytes per unique block (4
for the last touch, 5 per time slot, 4 slots per block) plus four histograms of 8 bytes.

The last-token cap (``cached ≤ prompt_tokens − 1``) only changes what a request counts, not
what the cache holds, so it applies per request here exactly as in the simulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from kvern.ingest.stream import BlockStream


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
    request_blocks: np.ndarray
    """int64[R]: blocks per request, ascending (for the admitted-block count)."""
    request_blocks_cumsum: np.ndarray
    """int64[R+1]: prefix sums of ``request_blocks``."""

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
        # A request admits its leading min(n, C) blocks, of which the found ones were there;
        # everything admitted but the final contents (min(C, U) blocks) was evicted.
        evicted = self.admitted_blocks(capacity_blocks) - hit_blocks - c
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

    def admitted_blocks(self, capacity_blocks: int) -> int:
        """Σ over requests of min(blocks, capacity): what a cache of that size takes in."""
        lengths, sums = self.request_blocks, self.request_blocks_cumsum
        shorter = int(np.searchsorted(lengths, capacity_blocks, side="left"))
        return int(sums[shorter]) + int(capacity_blocks) * (len(lengths) - shorter)

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
    lengths = np.sort(np.diff(offsets))
    # The kernel fills the histograms, then turns them in place into totals per capacity.
    _stack_distances(ids, offsets, prompt, stream.block_size, u, last_token_rule,
                     hist.tokens, hist.requests, hist.ratio, hist.blocks)
    return LRUCurve(
        model=stream.model,
        block_size=stream.block_size,
        last_token_rule=last_token_rule,
        requests=stream.num_requests,
        prompt_tokens=int(prompt.sum()),
        accesses=len(ids),
        cached_tokens=hist.tokens,
        hit_requests=hist.requests,
        hit_ratio_sum=hist.ratio,
        hit_blocks=hist.blocks,
        request_blocks=lengths,
        request_blocks_cumsum=np.concatenate([[0], np.cumsum(lengths)]),
    )


@dataclass(frozen=True, slots=True)
class _Hist:
    """Per stack distance d (1..U): what requests gain when the capacity reaches d; the kernel
    accumulates them in place into totals per capacity at the end."""

    tokens: np.ndarray
    requests: np.ndarray
    ratio: np.ndarray
    blocks: np.ndarray

    @classmethod
    def empty(cls, u: int) -> _Hist:
        return cls(np.zeros(u + 1, np.int64), np.zeros(u + 1, np.int64),
                   np.zeros(u + 1, np.float64), np.zeros(u + 1, np.int64))


# -- compiled kernel ---------------------------------------------------------------------------
#
# Live marks (one per block, at the time slot of its latest touch) are counted at five levels:
# the slot itself (int8), then per 64, 4096, 262144 and 16777216 slots. Setting or clearing a
# mark is O(1) (one add per level); counting the marks before a slot sums at most 63 entries
# per level plus the top level. Counting is rarely needed: when a block's last touch is the
# slot just below its parent's, it was touched in the same earlier request, and its distance
# is the parent's plus one. Chat traces have a count every few hundred blocks, not every block.

_L1, _L2, _L3, _L4 = 6, 12, 18, 24


@numba.njit(cache=True, nogil=True, inline="always")
def _set_mark(marks: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray, c4: np.ndarray,
              t: int, delta: int) -> None:
    marks[t] += delta
    c1[t >> _L1] += delta
    c2[t >> _L2] += delta
    c3[t >> _L3] += delta
    c4[t >> _L4] += delta


@numba.njit(cache=True, nogil=True)
def _marks_before(marks: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray,
                  c4: np.ndarray, t: int) -> int:
    """Marks at time slots ``< t``."""
    s = 0
    for i in range(t >> _L4):
        s += c4[i]
    for i in range((t >> _L4) << (_L4 - _L3), t >> _L3):
        s += c3[i]
    for i in range((t >> _L3) << (_L3 - _L2), t >> _L2):
        s += c2[i]
    for i in range((t >> _L2) << (_L2 - _L1), t >> _L1):
        s += c1[i]
    for i in range((t >> _L1) << _L1, t):
        s += marks[i]
    return s


@numba.njit(cache=True, nogil=True)
def _compact(marks: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray, c4: np.ndarray,
             owner: np.ndarray, last: np.ndarray, now: int) -> int:
    """Renumber the live time slots to ``0..live-1`` in order; returns the next free slot."""
    live = 0
    for t in range(now):
        if marks[t]:
            b = owner[t]
            owner[live] = b
            last[b] = live
            live += 1
    marks[:] = 0
    c1[:] = 0
    c2[:] = 0
    c3[:] = 0
    c4[:] = 0
    for t in range(live):
        _set_mark(marks, c1, c2, c3, c4, t, 1)
    return live


@numba.njit(cache=True, nogil=True)
def _stack_distances(ids: np.ndarray, offsets: np.ndarray, prompt: np.ndarray, block_size: int,
                     num_unique: int, last_token_rule: bool, h_tokens: np.ndarray,
                     h_requests: np.ndarray, h_ratio: np.ndarray, h_blocks: np.ndarray) -> None:
    num_req = len(offsets) - 1
    max_len = 0
    for r in range(num_req):
        max_len = max(max_len, offsets[r + 1] - offsets[r])
    # Time slots: compaction costs O(live blocks) and happens every (slots - live) accesses, so
    # 4 slots per unique block keep it to a third of the accesses' cost at 5 bytes per slot;
    # a short stream never compacts. After a compaction a whole request must still fit.
    slots = max(min(4 * num_unique, len(ids)), num_unique + max_len) + 1
    marks = np.zeros(slots, np.int8)
    c1 = np.zeros((slots >> _L1) + 1, np.int32)
    c2 = np.zeros((slots >> _L2) + 1, np.int32)
    c3 = np.zeros((slots >> _L3) + 1, np.int32)
    c4 = np.zeros((slots >> _L4) + 1, np.int32)
    owner = np.empty(slots, np.int32)
    last = np.full(num_unique, -1, np.int32)
    dist = np.empty(max_len, np.int64)
    now = 0
    live = 0
    for r in range(num_req):
        s = offsets[r]
        n = offsets[r + 1] - s
        if now + n > slots:
            now = _compact(marks, c1, c2, c3, c4, owner, last, now)
        # Lookup at arrival: distances before this request touches anything.
        found = 0
        run_max = 0
        d = 0
        prev_t = -2
        for j in range(n):
            t = last[ids[s + j]]
            if t < 0:
                break  # never seen: the cached prefix ends here at every capacity
            if t == prev_t - 1:
                d += 1  # touched right after its parent, which is still live: one further
            else:
                d = live - _marks_before(marks, c1, c2, c3, c4, t)
            prev_t = t
            run_max = max(run_max, d)
            dist[j] = run_max
            found += 1
        # What the request gains when the capacity reaches each block's distance. Tokens are
        # kept as a correction to block_size per found block: only a request's last block (or
        # the last-token cap) gains anything else, so most blocks write one counter, not two.
        p = prompt[r]
        cap = p - 1 if last_token_rule else p
        inv_p = 1.0 / p if p > 0 else 0.0
        prev = 0
        for j in range(found):
            d = dist[j]
            h_blocks[d] += 1
            tok = min(p if j + 1 == n else (j + 1) * block_size, p, cap)
            gain = tok - prev if tok > prev else 0
            if gain != block_size:
                h_tokens[d] += gain - block_size
            if gain > 0:
                h_ratio[d] += gain * inv_p
                if prev == 0:
                    h_requests[d] += 1
                prev = tok
        # Admission: touch tail -> head so the prefix ends up more recent than its extensions.
        for j in range(n - 1, -1, -1):
            b = ids[s + j]
            t = last[b]
            if t >= 0:
                _set_mark(marks, c1, c2, c3, c4, t, -1)
            else:
                live += 1
            _set_mark(marks, c1, c2, c3, c4, now, 1)
            owner[now] = b
            last[b] = now
            now += 1
    for c in range(1, num_unique + 1):
        h_tokens[c] += h_tokens[c - 1]
        h_requests[c] += h_requests[c - 1]
        h_ratio[c] += h_ratio[c - 1]
        h_blocks[c] += h_blocks[c - 1]
    for c in range(num_unique + 1):
        h_tokens[c] += block_size * h_blocks[c]
