"""``OnlineCache``: fed the keys of one request at a time (as the proxy does), it predicts exactly
what the batch simulation of the whole stream gives, through buffer growth and engine rebuilds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import BS, keys_of, make_stream, make_token_stream, requests

from kvern.infra.errors import UsageError
from kvern.sim import online
from kvern.sim.online import OnlineCache
from kvern.sim.policies import make_policy
from kvern.sim.profiles import get_profile

SETTINGS = [("ideal", "lru"), ("ideal", "fifo"), ("ideal", "lfu"), ("vllm", "lru"), ("vllm", "fifo"),
            ("vllm", "lfu"), ("sglang", "lru")]


@pytest.fixture(autouse=True)
def _tiny_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start with room for two requests, so every test grows the buffers and rebuilds engines."""
    monkeypatch.setattr(online, "_START", 2)


@settings(max_examples=60, deadline=None)
@given(requests(max_requests=40), st.sampled_from(SETTINGS), st.integers(1, 12))
def test_online_equals_the_batch_run(reqs: list, setting: tuple[str, str], capacity: int) -> None:
    profile, policy = setting
    stream = make_stream(reqs, BS)
    batch = get_profile(profile).simulate(stream, make_policy(policy), capacity)
    cache = OnlineCache(profile, policy, capacity, BS)
    got = [cache.serve(np.array(keys, dtype=np.uint64), p) for keys, (_, p) in zip(keys_of(reqs), reqs,
                                                                                   strict=True)]
    assert got == batch.cached_tokens.tolist()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=80), min_size=1, max_size=20),
       st.sampled_from(["sglang", "ideal", "vllm"]), st.integers(1, 6))
def test_online_with_token_ids(prompts: list[list[int]], profile: str, capacity: int) -> None:
    from kvern.ingest.blocks import token_block_keys

    stream = make_token_stream(prompts, 4)
    batch = get_profile(profile).simulate(stream, make_policy("lru"), capacity)
    cache = OnlineCache(profile, "lru", capacity, 4)
    got = [cache.serve(np.array(token_block_keys("m", p, 4), dtype=np.uint64), len(p), np.array(p, np.int32))
           for p in prompts]
    assert got == batch.cached_tokens.tolist()


def test_offline_policies_and_bad_settings_are_refused() -> None:
    for policy in ("belady", "cost"):
        with pytest.raises(UsageError, match="whole trace"):
            OnlineCache("ideal", policy, 10, BS)
    with pytest.raises(UsageError, match="supports only"):
        OnlineCache("sglang", "lfu", 10, BS)
    with pytest.raises(UsageError, match="at least one block"):
        OnlineCache("ideal", "lru", 0, BS)
