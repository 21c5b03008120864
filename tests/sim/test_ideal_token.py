"""``ideal-token``: the ideal model with one entry per token prefix."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import aligned, as_list, make_stream, make_token_stream, naive_ideal

from kvern.infra.errors import UsageError
from kvern.sim.simulate import simulate

PROMPTS = st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=10), min_size=1, max_size=12)


@settings(max_examples=120, deadline=None)
@given(PROMPTS, st.sampled_from(["lru", "fifo", "lfu", "cost", "belady"]), st.integers(1, 4))
def test_equals_the_naive_ideal_model_over_tokens(prompts: list[list[int]], policy: str, blocks: int) -> None:
    # capacity `blocks` of 4 tokens = 4·blocks token entries; the naive model at block size 1
    # treats each token as a block.
    params = {"attn_ratio": 0.05} if policy == "cost" else None
    res = simulate(make_token_stream(prompts, 4), policy, blocks, "ideal-token", params)
    cached, evicted, _ = naive_ideal([(p, len(p)) for p in prompts], 1, 4 * blocks, policy, attn_ratio=0.05)
    assert as_list(res.cached_tokens) == cached
    assert res.evicted_blocks == evicted


def test_serves_tokens_that_block_level_cannot() -> None:
    # The second prompt shares 6 tokens: 1 full block of 4 at block level, all 6 at token level.
    prompts = [[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 9, 9]]
    assert as_list(simulate(make_token_stream(prompts, 4), "lru", 100, "ideal").cached_tokens) == [0, 4]
    assert as_list(simulate(make_token_stream(prompts, 4), "lru", 100, "ideal-token").cached_tokens) == [0, 6]


def test_needs_token_ids() -> None:
    with pytest.raises(UsageError, match="has no token ids"):
        simulate(make_stream([aligned("ab", 4)], 4), "lru", 10, "ideal-token")
