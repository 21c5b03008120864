"""The compiled sglang engine against a naive radix tree, request by request.

The naive model is SGLang's ``RadixCache`` mechanics (``radix_cache.py``) in plain Python: dict
children, keys as lists, and ``evict`` as a scan of every node for the unlocked leaf of least
(last access, node id), instead of a lazy heap. It checks what the compiled tree does
differently (keys as slices of the stream, a child table with deletions, a heap compacted when
full, node slots reused and grown) without needing SGLang itself (``test_sglang_real.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import BS, make_stream, make_token_stream, requests

from kvern.infra.config import Config
from kvern.ingest.pipeline import load_trace
from kvern.ingest.stream import BlockStream, block_streams
from kvern.sim.policies import make_policy
from kvern.sim.profiles import get_profile
from kvern.sim.profiles.sglang import RadixEngine

ROOT = Path(__file__).resolve().parents[2]


class _Node:
    def __init__(self, ident: int, key: list[int], parent: _Node | None, time: int) -> None:
        self.id, self.key, self.parent, self.time = ident, key, parent, time
        self.children: dict[int, _Node] = {}
        self.lock = 0


class NaiveRadix:
    """``RadixCache`` with one request in flight: match, lock, evict, insert, unlock."""

    def __init__(self, capacity_pages: int) -> None:
        self.cap = capacity_pages
        self.root = _Node(0, [], None, 0)
        self.root.lock = 1
        self.nodes: list[_Node] = []
        self.clock, self.next_id, self.pages, self.evicted = 0, 1, 0, 0

    def _new(self, key: list[int], parent: _Node, t: int) -> _Node:
        node = _Node(self.next_id, key, parent, t)
        self.next_id += 1
        self.nodes.append(node)
        return node

    def walk(self, key: list[int], insert: bool) -> tuple[int, _Node]:
        """``_match_prefix_helper`` / ``_insert_helper``: stamp the path, split where it ends in a node."""
        self.clock += 1
        t = self.clock
        node, i = self.root, 0
        while i < len(key):
            child = node.children.get(key[i])
            if child is None:
                break
            child.time = t
            m = 0
            while m < min(len(child.key), len(key) - i) and child.key[m] == key[i + m]:
                m += 1
            i += m
            if m < len(child.key):  # _split_node
                mid = self._new(child.key[:m], node, t)
                mid.lock = child.lock
                mid.children = {child.key[m]: child}
                node.children[child.key[0]] = mid
                child.key, child.parent = child.key[m:], mid
                node = mid
                if not insert:
                    break
            else:
                node = child
        if insert and i < len(key):
            leaf = self._new(key[i:], node, t)
            node.children[key[i]] = leaf
            self.pages += len(key) - i
            return i, leaf
        return i, node

    def match_len(self, key: list[int]) -> int:
        node, i = self.root, 0
        while i < len(key) and key[i] in node.children:
            child = node.children[key[i]]
            m = 0
            while m < min(len(child.key), len(key) - i) and child.key[m] == key[i + m]:
                m += 1
            i += m
            if m < len(child.key):
                break
            node = child
        return i

    def lock(self, node: _Node, delta: int) -> None:
        while node is not self.root:
            node.lock += delta
            assert node.parent is not None
            node = node.parent

    def evict(self, want: int) -> None:
        freed = 0
        while freed < want:
            leaves = [x for x in self.nodes if not x.children and x.lock == 0]
            if not leaves:
                return
            x = min(leaves, key=lambda n: (n.time, n.id))
            assert x.parent is not None
            del x.parent.children[x.key[0]]
            self.nodes.remove(x)
            freed += len(x.key)
            self.pages -= len(x.key)
            self.evicted += len(x.key)

    def serve(self, key: list[int], pages: int, most: int) -> tuple[int, bool]:
        """Pages hit, and whether the request could not be scheduled."""
        if pages > self.cap:
            return 0, True
        hit, last = self.walk(key[:most], insert=False) if most > 0 else (0, self.root)
        self.lock(last, +1)
        need = pages - hit
        if self.cap - self.pages < need:
            self.evict(need - (self.cap - self.pages))
        assert self.cap - self.pages >= need
        self.walk(key, insert=True)
        self.lock(last, -1)
        return hit, False


def request_pages(stream: BlockStream, r: int) -> tuple[list[int], int, int, int]:
    """(pages to insert, pages needed, most pages to hit, tokens per page), as the scheduler has them."""
    p = int(stream.prompt_tokens[r])
    if stream.token_ids is not None:
        return stream.tokens_of(r).tolist(), p, p - 1, 1
    ids = stream.blocks_of(r).tolist()
    return ids[: p // stream.block_size], len(ids), (p - 1) // stream.block_size, stream.block_size


def check(stream: BlockStream, capacity: int, chunks: tuple[int, ...] = (1,)) -> RadixEngine:
    """Run both request by request (the engine in chunks of the given sizes, cycled) and compare."""
    engine = get_profile("sglang").engine(stream, make_policy("lru"), capacity)
    assert isinstance(engine, RadixEngine)
    naive = NaiveRadix(engine.capacity_pages)
    r, k = 0, 0
    while r < stream.num_requests:
        size = chunks[k % len(chunks)]
        k += 1
        engine.serve(np.arange(r, min(r + size, stream.num_requests), dtype=np.int64))
        for q in range(r, min(r + size, stream.num_requests)):
            key, pages, most, unit = request_pages(stream, q)
            hit, unschedulable = naive.serve(key, pages, most)
            ours = int(engine.cached_tokens[q]), bool(engine.unschedulable[q])
            assert ours == (hit * unit, unschedulable), q
        r += size
        assert (engine.used, engine.evicted_blocks) == (naive.pages, naive.evicted), r
    for q in range(stream.num_requests):
        key, _, _, unit = request_pages(stream, q)
        assert engine.cached_prefix(q) == naive.match_len(key) * unit, q
    return engine


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=12), min_size=1, max_size=30),
       st.integers(1, 5))
def test_token_pages_equal_the_naive_tree(prompts: list[list[int]], capacity: int) -> None:
    check(make_token_stream(prompts, 4), capacity)


@settings(max_examples=60, deadline=None)
@given(requests(), st.integers(1, 12))
def test_block_pages_equal_the_naive_tree(reqs: list, capacity: int) -> None:
    check(make_stream(reqs, BS), capacity)


def test_a_long_stream_grows_compacts_and_reuses_slots() -> None:
    # Shared heads of 3..40 tokens, then tails over a 4-token alphabet: splits everywhere, many
    # equal access times, thousands of evictions; served in chunks that cross the growth points.
    rng = np.random.default_rng(3)
    heads = [rng.integers(0, 4, rng.integers(3, 40)).tolist() for _ in range(25)]
    prompts = [heads[rng.integers(0, 25)] + rng.integers(0, 4, rng.integers(0, 30)).tolist()
               for _ in range(2500)]
    stream = make_token_stream(prompts, 4)
    small = check(stream, 12, chunks=(1, 7, 300))
    assert small.evicted_blocks > 10 * small.capacity_pages
    big = check(stream, 400, chunks=(1, 7, 300))
    assert len(big.tree.node) > 64 and big.evicted_blocks > 0  # it grew, and still evicted


@pytest.mark.slow
def test_chat_sample_equals_the_naive_tree() -> None:
    trace = load_trace(ROOT / "traces" / "chat_sample.jsonl", Config())
    for stream in block_streams(trace).values():
        check(stream, 64, chunks=(4096,))
