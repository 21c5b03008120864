"""The engines' eviction log: every dropped block, in eviction order, only when enabled."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from kvern.sim.policies import make_policy
from kvern.sim.profiles import get_profile
from tests.sim.sim_helpers import BS, make_stream, requests


@pytest.mark.parametrize("profile,policy",
                         [("ideal", "lru"), ("ideal", "lfu"), ("vllm", "lru"), ("vllm", "fifo")])
@settings(max_examples=40, deadline=None)
@given(reqs=requests(max_requests=20))
def test_log_is_what_left_the_cache(profile: str, policy: str, reqs: list) -> None:
    # Served one request at a time, the ids logged for a request were cached before it or
    # admitted by it, and every block cached before it and gone after it was logged. (vLLM
    # may drop a key and cache it again in the same request: a request that recomputes its
    # only block takes the free queue's head, which can be that block's own slot.)
    stream = make_stream(reqs, BS)
    eng = get_profile(profile).engine(stream, make_policy(policy), 3)
    eng.enable_eviction_log()
    seen: set[int] = set()
    for r in range(stream.num_requests):
        before = set(eng.cached_blocks().tolist())
        eng.serve(np.array([r], np.int64))
        after = set(eng.cached_blocks().tolist())
        logged = eng.take_evicted().tolist()
        assert len(logged) == len(set(logged))
        touched = before | set(stream.blocks_of(r).tolist())
        assert set(logged) <= touched
        if profile == "ideal":
            assert not set(logged) & after
        assert (before - after) <= set(logged)
        seen |= set(logged)
    assert len(eng.take_evicted()) == 0


def test_log_off_by_default_and_results_unchanged() -> None:
    reqs = [(list("abc"), 12), (list("abd"), 12), (list("e"), 4), (list("abc"), 12), (list("fgh"), 12)]
    stream = make_stream(reqs, BS)
    plain = get_profile("ideal").simulate(stream, make_policy("lru"), 3)
    eng = get_profile("ideal").engine(stream, make_policy("lru"), 3)
    eng.enable_eviction_log()
    for r in range(stream.num_requests):
        eng.serve(np.array([r], np.int64))
    assert np.array_equal(plain.cached_tokens, eng.cached_tokens)
    # Ids a..h = 0..7 (first appearance), LRU of 3, each request touches tail -> head:
    # abd evicts c (2); e evicts d (3); abc re-admits c and evicts e (4); fgh evicts the
    # whole a>b>c list from its tail: c, b, a. Never taken, the log holds all of it in order.
    assert eng.take_evicted().tolist() == [2, 3, 4, 2, 1, 0]


def test_sglang_has_no_log() -> None:
    stream = make_stream([(list("ab"), 8)], BS)
    eng = get_profile("sglang").engine(stream, make_policy("lru"), 3)
    with pytest.raises(NotImplementedError, match="sglang"):
        eng.take_evicted()
