"""Small traces for the curve and sweep tests, and a naive LRU prefix cache to check against."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from hypothesis import strategies as st

from kvern.ingest.blocks import hash_id_block_keys
from kvern.ingest.stream import BlockStream, block_streams
from kvern.ingest.trace import Trace, TraceMeta, with_meta

Request = tuple[list[int], int]
"""(block keys, prompt tokens) of one request."""


def make_trace(requests: list[Request], block_size: int, model: str = "m") -> Trace:
    n = len(requests)
    table = pa.table({
        "request_id": [str(i) for i in range(n)],
        "arrival_s": [float(i) for i in range(n)],
        "model": [model] * n,
        "session_id": [None] * n,
        "prompt_tokens": [p for _, p in requests],
        "output_tokens": [None] * n,
        "block_keys": pa.array([keys for keys, _ in requests], pa.list_(pa.uint64())),
        "token_ids": [None] * n,
    })
    meta = TraceMeta(block_size=block_size, source="test", format="test")
    return Trace(with_meta(table, meta), meta)


def make_stream(requests: list[Request], block_size: int) -> BlockStream:
    return block_streams(make_trace(requests, block_size))["m"]


@dataclass
class NaiveResult:
    cached_tokens: int = 0
    hit_requests: int = 0
    hit_ratio_sum: float = 0.0
    hit_blocks: int = 0
    evicted_blocks: int = 0


def mooncake_stream(path: Path) -> BlockStream:
    """The Mooncake trace at its own 512-token blocks, read directly (no ingest)."""
    reqs: list[Request] = []
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            reqs.append((hash_id_block_keys("default", row["hash_ids"]), row["input_length"]))
    return make_stream(reqs, 512)


def naive_lru(requests: list[Request], block_size: int, capacity: int,
              last_token_rule: bool = False) -> NaiveResult:
    """docs/architecture.md §3–4 read literally: lookup; admit the leading ``min(n, capacity)`` blocks
    (a longer request keeps only its head), touching tail → head; then evict the least recent
    *leaf* (ties: deeper, then lower key) until at most ``capacity`` remain."""
    parent: dict[int, int | None] = {}
    depth: dict[int, int] = {}
    for keys, _ in requests:
        for i, k in enumerate(keys):
            parent[k] = keys[i - 1] if i else None
            depth[k] = i
    cache: dict[int, int] = {}
    clock = 0
    res = NaiveResult()
    for keys, prompt in requests:
        found = 0
        while found < len(keys) and keys[found] in cache:
            found += 1
        cached = min(found * block_size, prompt)
        if last_token_rule:
            cached = min(cached, prompt - 1)
        cached = max(cached, 0)
        res.hit_blocks += found
        res.cached_tokens += cached
        res.hit_requests += cached > 0
        res.hit_ratio_sum += cached / prompt
        for k in reversed(keys[:capacity]):
            clock += 1
            cache[k] = clock
        while len(cache) > capacity:
            with_child = {parent[k] for k in cache}
            leaves = [k for k in cache if k not in with_child]
            victim = min(leaves, key=lambda k: (cache[k], -depth[k], k))
            del cache[victim]
            res.evicted_blocks += 1
    return res


@st.composite
def prefix_requests(draw: st.DrawFn, max_requests: int = 25, block_size: int = 4) -> list[Request]:
    """Requests that share prefixes the way chats do: each extends a prefix of an earlier one.

    A partial tail is always a fresh block, since a real key covers its tokens too.
    """
    n = draw(st.integers(1, max_requests))
    out: list[Request] = []
    full: list[int] = []  # full blocks of each request
    fresh = 1
    for _ in range(n):
        keys: list[int] = []
        if out and draw(st.booleans()):
            base = draw(st.integers(0, len(out) - 1))
            keys = list(out[base][0][: draw(st.integers(0, full[base]))])
        new = draw(st.integers(0 if keys else 1, 5))
        keys += list(range(fresh, fresh + new))
        fresh += new
        tail = draw(st.integers(0, block_size - 1)) if new else 0
        prompt = len(keys) * block_size - tail
        out.append((keys, prompt))
        full.append(len(keys) - (1 if tail else 0))
    return out
