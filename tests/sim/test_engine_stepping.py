"""Each profile's cache as a steppable object: fed one request at a time it gives exactly what a
batch run gives, and ``cached_prefix`` answers what the next ``serve`` will find without changing it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import BS, make_stream, make_token_stream, requests

from kvern.ingest.stream import BlockStream
from kvern.sim.policies import make_policy
from kvern.sim.profiles import get_profile
from kvern.sim.profiles.ideal import Ideal
from kvern.sim.profiles.vllm import VLLM

SETTINGS = [("ideal", "lru"), ("ideal", "fifo"), ("ideal", "lfu"), ("ideal", "cost"), ("ideal", "belady"),
            ("vllm", "lru"), ("vllm", "lfu"), ("vllm", "belady"), ("sglang", "lru"), ("llamacpp", "lru")]


def _one_by_one(profile: str, stream: BlockStream, policy: str, capacity: int) -> tuple[list[int], list[int]]:
    engine = get_profile(profile).engine(stream, make_policy(policy), capacity)
    for r in range(stream.num_requests):
        engine.serve(np.array([r], dtype=np.int64))
    res = engine.result()
    return res.cached_tokens.tolist(), [res.evicted_blocks]


@settings(max_examples=60, deadline=None)
@given(requests(), st.sampled_from(SETTINGS), st.integers(1, 12))
def test_one_request_at_a_time_equals_the_batch_run(reqs: list, setting: tuple[str, str],
                                                     capacity: int) -> None:
    profile, policy = setting
    stream = make_stream(reqs, BS)
    batch = get_profile(profile).simulate(stream, make_policy(policy), capacity)
    assert _one_by_one(profile, stream, policy, capacity) == (batch.cached_tokens.tolist(),
                                                              [batch.evicted_blocks])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=12), min_size=1, max_size=15),
       st.sampled_from(["sglang", "ideal-token"]), st.integers(1, 4))
def test_token_level_engines_step_too(prompts: list[list[int]], profile: str, capacity: int) -> None:
    stream = make_token_stream(prompts, 4)
    batch = get_profile(profile).simulate(stream, make_policy("lru"), capacity)
    assert _one_by_one(profile, stream, "lru", capacity) == (batch.cached_tokens.tolist(),
                                                             [batch.evicted_blocks])


def _lru_fast_paths_off(profile: str) -> Ideal | VLLM:
    prof = Ideal() if profile == "ideal" else VLLM()
    if isinstance(prof, Ideal):
        prof.lru_kernel = False
    else:
        prof.lru_queue = False
    return prof


@settings(max_examples=60, deadline=None)
@given(requests(), st.sampled_from([("ideal", True), ("ideal", False), ("vllm", True), ("vllm", False),
                                    ("sglang", True)]), st.sampled_from(["lru", "fifo"]), st.integers(1, 12))
def test_cached_prefix_is_what_serve_finds_and_changes_nothing(reqs: list, setting: tuple[str, bool],
                                                               policy: str, capacity: int) -> None:
    profile, fast = setting
    if profile == "sglang":
        policy = "lru"
    stream = make_stream(reqs, BS)
    prof = get_profile(profile) if fast else _lru_fast_paths_off(profile)
    engine = prof.engine(stream, make_policy(policy), capacity)
    for r in range(stream.num_requests):
        before = engine.cached_blocks().tolist(), engine.used
        prefix = engine.cached_prefix(r)
        assert (engine.cached_blocks().tolist(), engine.used) == before  # a query touches nothing
        assert engine.cached_prefix(r) == prefix
        engine.serve(np.array([r], dtype=np.int64))
        p = int(stream.prompt_tokens[r])
        if profile == "ideal":
            expected = prefix
        else:  # the last token is recomputed: at most (p - 1) // BS whole blocks hit
            expected = 0 if engine.unschedulable[r] else min(prefix // BS, (p - 1) // BS) * BS
        assert engine.cached_tokens[r] == expected, r
