"""The sglang profile: a worked radix-tree sequence and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import (
    BS,
    aligned,
    as_list,
    capped_infinite,
    make_stream,
    make_token_stream,
    requests,
    run_engine,
)

from kvern.infra.errors import UsageError
from kvern.sim.simulate import simulate


def test_split_lru_leaf_nodes_and_whole_node_eviction() -> None:
    # Page = block = 4 tokens, pool of 4 pages.
    # r0 [a,b,c]: match ≤ (12−1)//4 = 2 pages: nothing; insert node N=[a,b,c] (3 pages).
    # r1 same: the match of [a,b] ends inside N, which splits into [a,b] -> [c]; hit 8.
    #   One new page is needed, one is free; insert finds all of [a,b,c] (deduplicated).
    # r2 [d,e]: need 2, free 1: evict the LRU leaf [c] (1 page); insert [d,e].
    # r3 [a,b,c]: hit [a,b] (locked); need 1, free 0: the only unlocked leaf is [d,e]: both
    #   pages go although one was needed.
    reqs = [aligned("abc", 4), aligned("abc", 4), aligned("de", 4), aligned("abc", 4)]
    res, engine = run_engine("sglang", make_stream(reqs, 4), "lru", 4)
    assert as_list(res.cached_tokens) == [0, 8, 0, 8]
    assert res.evicted_blocks == 3
    assert engine.used == 3  # [a,b] -> [c]


def test_partial_tail_and_unschedulable() -> None:
    reqs = [(list("abp"), 10), (list("abp"), 10), aligned("abcde", 4)]
    res = simulate(make_stream(reqs, 4), "lru", 4, "sglang")
    assert as_list(res.cached_tokens) == [0, 8, 0]
    assert as_list(res.unschedulable) == [0, 0, 1]


def test_only_lru_is_offered() -> None:
    with pytest.raises(UsageError, match="supports only the policies lru"):
        simulate(make_stream([aligned("a", 4)], 4), "lfu", 4, "sglang")


@settings(max_examples=80, deadline=None)
@given(requests(), st.integers(1, 12))
def test_pool_never_overflows_and_last_token_rule_holds(reqs: list, capacity: int) -> None:
    res, engine = run_engine("sglang", make_stream(reqs, BS), "lru", capacity)
    assert engine.used <= capacity
    for c, (_, p) in zip(as_list(res.cached_tokens), reqs, strict=True):
        assert c <= max(p - 1, 0) and c % BS == 0


@settings(max_examples=60, deadline=None)
@given(requests())
def test_an_unbounded_pool_hits_the_capped_leading_run(reqs: list) -> None:
    res = simulate(make_stream(reqs, BS), "lru", 10_000, "sglang")
    assert as_list(res.cached_tokens) == capped_infinite(reqs, BS)


def test_token_level_pages_when_the_trace_has_token_ids() -> None:
    # Page size 1, pool = 2 blocks × 4 = 8 tokens.
    # r0 [1..5]: insert node [1,2,3,4,5].
    # r1 [1,2,3,9]: match ≤ 3 tokens splits it into [1,2,3] -> [4,5]; hit 3; insert leaf [9].
    # r2 [7,7,7]: need 3, free 8 − 6 = 2: the LRU leaf is [4,5] (stamped by r1's match,
    #   before r1's insert stamped [9]); both of its tokens go (one was needed). 7 tokens.
    # r3 [1..5]: hit [1,2,3] = 3; need 2, free 1: the LRU leaf [9] (older than [7,7,7]) goes,
    #   then [4,5] is inserted again: 8 tokens.
    prompts = [[1, 2, 3, 4, 5], [1, 2, 3, 9], [7, 7, 7], [1, 2, 3, 4, 5]]
    res, engine = run_engine("sglang", make_token_stream(prompts, 4), "lru", 2)
    assert as_list(res.cached_tokens) == [0, 3, 0, 3]
    assert res.evicted_blocks == 2 + 1  # pages are tokens here
    assert (engine.used, engine.capacity_pages) == (8, 8)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=12), min_size=1, max_size=15))
def test_token_level_unbounded_pool_hits_the_longest_common_prefix(prompts: list[list[int]]) -> None:
    res = simulate(make_token_stream(prompts, 4), "lru", 10_000, "sglang")

    def lcp(a: list[int], b: list[int]) -> int:
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    expected = [min(len(p) - 1, max((lcp(p, q) for q in prompts[:r]), default=0))
                for r, p in enumerate(prompts)]
    assert as_list(res.cached_tokens) == expected


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=12), min_size=1, max_size=15),
       st.integers(1, 4))
def test_token_level_pool_never_overflows(prompts: list[list[int]], capacity: int) -> None:
    res, engine = run_engine("sglang", make_token_stream(prompts, 4), "lru", capacity)
    assert engine.used <= capacity * 4
    for c, p, u in zip(as_list(res.cached_tokens), prompts, as_list(res.unschedulable), strict=True):
        assert c <= len(p) - 1 and (not u or (c == 0 and len(p) > capacity * 4))
