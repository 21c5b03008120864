"""Item 5 of the cluster issue, as properties over random small traces (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvern.cluster.fleet import Tiering
from kvern.cluster.routers import ROUTERS
from kvern.sim.bounds import infinite_cache_hits
from kvern.sim.kernels import lru_run
from kvern.sim.policies import make_policy
from kvern.sim.profiles import get_profile
from tests.cluster.helpers import INSTANT, fleet, slow
from tests.sim.sim_helpers import BS, make_stream, make_trace, requests

EXAMPLES = settings(max_examples=25, deadline=None)


@pytest.mark.parametrize("profile", ["vllm", "sglang", "ideal"])
@pytest.mark.parametrize("router", list(ROUTERS))
@EXAMPLES
@given(reqs=requests(max_requests=25), cap=st.integers(2, 12))
def test_one_replica_is_replay(profile: str, router: str, reqs: list, cap: int) -> None:
    # One replica with any router serves every request in order: exactly `kvern replay`.
    stream = make_stream(reqs, BS)
    replay = get_profile(profile).simulate(stream, make_policy("lru"), cap)
    run = fleet(stream, profile, 1, cap, router, tm=slow(decode_s_per_token=0.5))
    assert np.array_equal(run.gpu_tokens, replay.cached_tokens)
    assert np.array_equal(run.unschedulable, replay.unschedulable)
    assert (run.replica == 0).all()


@pytest.mark.parametrize("replicas", [2, 3, 5])
@EXAMPLES
@given(reqs=requests(max_requests=30))
def test_prefix_router_reaches_the_infinite_bound_but_for_split_prefixes(replicas: int, reqs: list) -> None:
    # Unbounded caches, the exact prefix router: each request gets the longest prefix any
    # single replica holds; what it misses of the infinite-cache bound is exactly the part of
    # its prefix the fleet held only across replicas (counted as split_tokens).
    trace = make_trace(reqs, BS)
    stream = make_stream(reqs, BS)
    bound = infinite_cache_hits(trace)
    run = fleet(stream, "ideal", replicas, 10_000, "prefix")
    assert (run.regret_tokens == 0).all()
    assert np.array_equal(run.gpu_tokens + run.split_tokens, bound)


@EXAMPLES
@given(reqs=requests(max_requests=40), gpu=st.integers(1, 8), cpu=st.integers(1, 12),
       replicas=st.integers(1, 3))
def test_exclusive_hierarchy_is_one_lru_of_the_sum(reqs: list, gpu: int, cpu: int, replicas: int) -> None:
    # LRU's stack property: an exclusive GPU+CPU hierarchy (demote on eviction, promote on
    # hit) under `ideal` holds the top gpu+cpu of one recency list. With one replica, in total
    # it serves what one LRU of gpu+cpu serves, and its GPU tier what an LRU of gpu serves.
    stream = make_stream(reqs, BS)
    run = fleet(stream, "ideal", 1, gpu, "round-robin", tiering=Tiering(cpu, 0, "evict"))
    assert np.array_equal(run.gpu_tokens, lru_run(stream, gpu).cached_tokens)
    assert np.array_equal(run.cached_tokens, lru_run(stream, gpu + cpu).cached_tokens)
    # With a disk tier under it the stack goes one level deeper: gpu+cpu+disk.
    run3 = fleet(stream, "ideal", 1, gpu, "round-robin", tiering=Tiering(cpu, 5, "evict"))
    assert np.array_equal(run3.cached_tokens, lru_run(stream, gpu + cpu + 5).cached_tokens)
    # Several replicas: each replica's hierarchy is one LRU of the sum over its own requests.
    many = fleet(stream, "ideal", replicas, gpu, "round-robin", tiering=Tiering(cpu, 0, "evict"))
    for i in range(replicas):
        mine = np.flatnonzero(many.replica == i)
        if len(mine) == 0:  # fewer requests than replicas: this one served nothing
            continue
        sub = make_stream([reqs[j] for j in mine], BS)
        assert np.array_equal(many.cached_tokens[mine], lru_run(sub, gpu + cpu).cached_tokens)


@EXAMPLES
@given(reqs=requests(max_requests=30), cap=st.integers(2, 12), replicas=st.integers(2, 4))
def test_approximate_routers_with_a_perfect_estimate_are_prefix(reqs: list, cap: int, replicas: int) -> None:
    # Idle replicas (no load to weigh) and each router told the exact caches with its cache
    # weight dominant: every approximate router then routes as the exact prefix router.
    stream = make_stream(reqs, BS)
    ref = fleet(stream, "vllm", replicas, cap, "prefix", tm=INSTANT)
    perfect = {
        "dynamo": {"kv_events": True, "overlap_score_weight": 1000.0},
        "sglang": {"estimate": "exact", "cache_threshold": -1.0, "balance_abs_threshold": 10**9},
        "llm-d": {"estimate": "exact", "queue_weight": 0.0, "kv_weight": 0.0},
    }
    for name, params in perfect.items():
        run = fleet(stream, "vllm", replicas, cap, name, params, tm=INSTANT)
        assert np.array_equal(run.replica, ref.replica), name
        assert np.array_equal(run.gpu_tokens, ref.gpu_tokens), name
        assert (run.estimate_blocks == run.exact_blocks).all(), name


@EXAMPLES
@given(reqs=requests(max_requests=30), cap=st.integers(2, 12), cpu=st.integers(1, 12))
def test_tiers_never_change_the_gpu(reqs: list, cap: int, cpu: int) -> None:
    # Offload adds hits below the GPU; what the GPU caches is the same with or without it.
    stream = make_stream(reqs, BS)
    for profile, mode in (("vllm", "store"), ("vllm", "evict"), ("ideal", "store")):
        base = fleet(stream, profile, 2, cap, "round-robin")
        tiered = fleet(stream, profile, 2, cap, "round-robin", tiering=Tiering(cpu, 3, mode))
        assert np.array_equal(base.gpu_tokens, tiered.gpu_tokens)
        assert (tiered.cached_tokens >= base.gpu_tokens).all()
        p = stream.prompt_tokens
        limit = p if profile == "ideal" else np.maximum(p - 1, 0)
        assert (tiered.cached_tokens <= limit).all()
