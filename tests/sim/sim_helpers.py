"""Small traces for the simulator tests, and naive reference models to compare against.

A request is written as its block *labels* (any hashable: "A", 3, …) and its prompt length;
labels are chained into prefix keys the way ingest chains hash ids, so equal leading labels
mean a shared prefix.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pyarrow as pa
from hypothesis import strategies as st

from kvern.ingest.blocks import hash_id_block_keys, token_block_keys
from kvern.ingest.stream import BlockStream, block_streams
from kvern.ingest.trace import Trace, TraceMeta, with_meta
from kvern.sim.policies import make_policy
from kvern.sim.policies.cost import block_costs
from kvern.sim.profiles import CacheEngine, Profile, get_profile
from kvern.sim.result import SimResult

Req = tuple[Sequence[Hashable], int]
"""(block labels, prompt tokens)."""

MODEL = "m"


def label_ids(labels: Sequence[Hashable]) -> list[int]:
    return [hash(str(x)) & 0x7FFFFFFFFFFF for x in labels]


def keys_of(reqs: Sequence[Req]) -> list[list[int]]:
    return [hash_id_block_keys(MODEL, label_ids(labels)) for labels, _ in reqs]


def make_trace(reqs: Sequence[Req], block_size: int, model: str = MODEL) -> Trace:
    n = len(reqs)
    keys = [hash_id_block_keys(model, label_ids(labels)) for labels, _ in reqs]
    table = pa.table({
        "request_id": pa.array([f"r{i}" for i in range(n)], pa.string()),
        "arrival_s": pa.array([float(i) for i in range(n)], pa.float64()),
        "model": pa.array([model] * n, pa.string()),
        "session_id": pa.array([None] * n, pa.string()),
        "prompt_tokens": pa.array([p for _, p in reqs], pa.int32()),
        "output_tokens": pa.array([None] * n, pa.int32()),
        "block_keys": pa.array(keys, pa.list_(pa.uint64())),
        "token_ids": pa.array([None] * n, pa.list_(pa.int32())),
    })
    meta = TraceMeta(block_size=block_size, source="test.jsonl", format="test")
    return Trace(with_meta(table, meta), meta)


def make_stream(reqs: Sequence[Req], block_size: int) -> BlockStream:
    return block_streams(make_trace(reqs, block_size))[MODEL]


def make_token_stream(prompts: Sequence[Sequence[int]], block_size: int) -> BlockStream:
    """A tokenized trace (token ids kept, keys from the token blocks)."""
    n = len(prompts)
    keys = [token_block_keys(MODEL, p, block_size) for p in prompts]
    table = pa.table({
        "request_id": pa.array([f"r{i}" for i in range(n)], pa.string()),
        "arrival_s": pa.array([float(i) for i in range(n)], pa.float64()),
        "model": pa.array([MODEL] * n, pa.string()),
        "session_id": pa.array([None] * n, pa.string()),
        "prompt_tokens": pa.array([len(p) for p in prompts], pa.int32()),
        "output_tokens": pa.array([None] * n, pa.int32()),
        "block_keys": pa.array(keys, pa.list_(pa.uint64())),
        "token_ids": pa.array([list(p) for p in prompts], pa.list_(pa.int32())),
    })
    meta = TraceMeta(block_size=block_size, source="tokens.jsonl", format="test")
    return block_streams(Trace(with_meta(table, meta), meta))[MODEL]


def aligned(labels: Sequence[Hashable], block_size: int) -> Req:
    return (list(labels), len(labels) * block_size)


# -- hypothesis strategies --------------------------------------------------------------------

BS = 4


@st.composite
def requests(draw: st.DrawFn, max_requests: int = 30, block_aligned: bool = False) -> list[Req]:
    """Requests over a 3-letter alphabet of blocks, so prefixes are shared often."""
    n = draw(st.integers(1, max_requests))
    out: list[Req] = []
    for _ in range(n):
        labels = draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=6))
        tail = BS if block_aligned else draw(st.integers(1, BS))
        out.append((labels, (len(labels) - 1) * BS + tail))
    return out


# -- the ideal model, read literally from docs/architecture.md §3–4 ------------------------------------------


def naive_ideal(reqs: Sequence[Req], block_size: int, capacity: int, policy: str,
                attn_ratio: float = 0.0) -> tuple[list[int], int, set[int]]:
    """Cached tokens per request, evictions and the final cache, scanning all leaves each time.

    Priorities: lru (last use), fifo (insertion), lfu (uses, last use), cost (greedy-dual),
    belady (-(next use)); ties deeper first, then the interned id (first appearance).
    """
    stream = make_stream(reqs, block_size)
    chains = [stream.blocks_of(r).tolist() for r in range(stream.num_requests)]
    parent = stream.parent.tolist()
    depth = stream.depth.tolist()
    costs = block_costs(stream.depth, stream.block_tokens, block_size, attn_ratio).tolist()
    cache: set[int] = set()
    last: dict[int, int] = {}
    ins: dict[int, int] = {}
    uses: dict[int, int] = {}
    gd: dict[int, float] = {}
    aging = 0.0
    cached, evicted = [], 0

    def next_use(b: int, r: int) -> int:
        return next((q for q in range(r + 1, len(chains)) if b in chains[q]), len(chains))

    for r, ((_, prompt), chain) in enumerate(zip(reqs, chains, strict=True)):
        k = 0
        while k < len(chain) and chain[k] in cache:
            k += 1
        cached.append(prompt if k == len(chain) else k * block_size)
        for b in chain[: min(len(chain), capacity)]:
            new = b not in cache
            cache.add(b)
            last[b] = r
            if new:
                ins[b] = r
                uses[b] = 0
            uses[b] += 1
            gd[b] = aging + uses[b] * costs[b]
        while len(cache) > capacity:
            leaves = [b for b in cache if not any(parent[c] == b for c in cache)]
            prio = {
                "lru": lambda b: (last[b], 0),
                "fifo": lambda b: (ins[b], 0),
                "lfu": lambda b: (uses[b], last[b]),
                "cost": lambda b: (gd[b], 0),
                "belady": lambda b, r=r: (-next_use(b, r), 0),
            }[policy]
            victim = min(leaves, key=lambda b: (*prio(b), -depth[b], b))
            if policy == "cost":
                aging = gd[victim]
            cache.remove(victim)
            evicted += 1
    return cached, evicted, cache


# -- vLLM's BlockPool, ported literally (lists instead of linked lists) --------------------------


class NaiveBlockPool:
    """vLLM v1 ``BlockPool`` + ``FullAttentionManager`` for one request at a time.

    ``queue`` is ``FreeKVCacheBlockQueue`` (head first), ``hashes`` is
    ``BlockHashToBlockMap`` (key -> slots in insertion order); no leaf rule anywhere.
    """

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self.queue: list[int] = list(range(num_blocks))
        self.hashes: dict[int, dict[int, None]] = {}
        self.slot_key: dict[int, int] = {}
        self.evicted = 0

    def run(self, keys: Sequence[int], prompt: int, block_size: int) -> tuple[int, bool]:
        n = len(keys)
        if n > self.num_blocks:
            return 0, True
        hits: list[int] = []
        for key in keys[: (prompt - 1) // block_size]:  # find_longest_cache_hit
            copies = self.hashes.get(key)
            if not copies:
                break
            hits.append(next(iter(copies)))
        for s in hits:  # touch: ref_cnt 0 -> 1 leaves the free queue
            self.queue.remove(s)
        new = []
        for _ in range(n - len(hits)):  # get_new_blocks
            s = self.queue.pop(0)
            if s in self.slot_key:  # _maybe_evict_cached_block
                key = self.slot_key.pop(s)
                del self.hashes[key][s]
                if not self.hashes[key]:
                    del self.hashes[key]
                self.evicted += 1
            new.append(s)
        blocks = hits + new
        for j in range(len(hits), prompt // block_size):  # cache_full_blocks
            self.slot_key[blocks[j]] = keys[j]
            self.hashes.setdefault(keys[j], {})[blocks[j]] = None
        ordered = list(reversed(blocks))  # free_blocks(reversed(req_blocks))
        fresh = [s for s in ordered if s not in self.slot_key]
        cached = [s for s in ordered if s in self.slot_key]
        self.queue = fresh + self.queue + cached
        return len(hits) * block_size, False


def naive_vllm(reqs: Sequence[Req], block_size: int, capacity: int) -> tuple[list[int], list[bool], int]:
    pool = NaiveBlockPool(capacity)
    cached, unsched = [], []
    for keys, (_, prompt) in zip(keys_of(reqs), reqs, strict=True):
        c, u = pool.run(keys, prompt, block_size)
        cached.append(c)
        unsched.append(u)
    return cached, unsched, pool.evicted


def capped_infinite(reqs: Sequence[Req], block_size: int) -> list[int]:
    """vLLM/SGLang with an unbounded pool: the leading run of seen keys, capped at (P−1)//bs blocks."""
    seen: set[int] = set()
    out = []
    for keys, (_, prompt) in zip(keys_of(reqs), reqs, strict=True):
        k = 0
        while k < min(len(keys), (prompt - 1) // block_size) and keys[k] in seen:
            k += 1
        out.append(k * block_size)
        seen.update(keys[: prompt // block_size])
    return out


def as_list(a: np.ndarray) -> list[int]:
    return [int(x) for x in a]


def run_engine(profile: str | Profile, stream: BlockStream, policy: str, capacity: int
               ) -> tuple[SimResult, CacheEngine]:
    """Serve every request of ``stream`` through a fresh engine; its result and the engine, to read."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    engine = prof.engine(stream, make_policy(policy), capacity)
    engine.serve(np.arange(stream.num_requests, dtype=np.int64))
    return engine.result(), engine
