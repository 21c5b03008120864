"""The ideal profile against a naive model of docs/architecture.md §3–4, and the invariants of §3–4."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import BS, as_list, make_stream, make_trace, naive_ideal, requests, run_engine

from kvern.sim.bounds import infinite_cache_hits
from kvern.sim.simulate import simulate

POLICIES = ["lru", "fifo", "lfu", "cost", "belady"]
ONLINE = ["lru", "fifo", "lfu", "cost"]


@settings(max_examples=200, deadline=None)
@given(requests(max_requests=20), st.sampled_from(POLICIES), st.integers(1, 10))
def test_each_policy_equals_the_naive_model(reqs: list, policy: str, capacity: int) -> None:
    params = {"attn_ratio": 0.05} if policy == "cost" else None
    res = simulate(make_stream(reqs, BS), policy, capacity, "ideal", params)
    cached, evicted, _cache = naive_ideal(reqs, BS, capacity, policy, attn_ratio=0.05)
    assert as_list(res.cached_tokens) == cached
    assert res.evicted_blocks == evicted


@settings(max_examples=100, deadline=None)
@given(requests(), st.sampled_from(POLICIES), st.integers(1, 10))
def test_cache_stays_within_capacity_and_prefix_closed(reqs: list, policy: str, capacity: int) -> None:
    stream = make_stream(reqs, BS)
    _res, engine = run_engine("ideal", stream, policy, capacity)
    cache = set(engine.cached_blocks().tolist())
    assert len(cache) <= capacity
    assert all(stream.parent[b] < 0 or int(stream.parent[b]) in cache for b in cache)


@settings(max_examples=100, deadline=None)
@given(requests(block_aligned=True), st.integers(1, 10))
def test_belady_hits_at_least_as_many_tokens_as_every_online_policy(reqs: list, capacity: int) -> None:
    stream = make_stream(reqs, BS)
    best = simulate(stream, "belady", capacity, "ideal").total_cached_tokens
    for policy in ONLINE:
        assert simulate(stream, policy, capacity, "ideal").total_cached_tokens <= best, policy


@settings(max_examples=100, deadline=None)
@given(requests(), st.integers(1, 12))
def test_lru_is_monotone_in_capacity(reqs: list, capacity: int) -> None:
    stream = make_stream(reqs, BS)
    small = simulate(stream, "lru", capacity, "ideal").cached_tokens
    large = simulate(stream, "lru", capacity + 1, "ideal").cached_tokens
    assert np.all(large >= small)  # the inclusion property holds request by request


@settings(max_examples=60, deadline=None)
@given(requests(), st.sampled_from(POLICIES))
def test_infinite_capacity_equals_the_ingest_upper_bound(reqs: list, policy: str) -> None:
    trace = make_trace(reqs, BS)
    res = simulate(make_stream(reqs, BS), policy, 10_000, "ideal")
    assert as_list(res.cached_tokens) == as_list(infinite_cache_hits(trace))
    assert res.evicted_blocks == 0


def test_request_longer_than_the_cache_keeps_its_leading_blocks() -> None:
    reqs = [(list("abcde"), 20), (list("abcde"), 20)]
    res = simulate(make_stream(reqs, BS), "lru", 3, "ideal")
    assert as_list(res.cached_tokens) == [0, 12]
    assert not res.unschedulable.any()
