"""The compiled single-capacity LRU equals the naive model and the one-pass curve."""

from __future__ import annotations

import numpy as np
import pytest
from curve_helpers import Request, make_stream, mooncake_stream, naive_lru, prefix_requests
from hypothesis import given, settings
from hypothesis import strategies as st
from trace_paths import MOONCAKE

from kvern.sim.curve import lru_curve
from kvern.sim.kernels import lru_run

BS = 4


@settings(max_examples=150, deadline=None)
@given(prefix_requests(block_size=BS), st.booleans(), st.integers(0, 40))
def test_lru_run_equals_naive(requests: list[Request], rule: bool, cap: int) -> None:
    run = lru_run(make_stream(requests, BS), cap, last_token_rule=rule)
    want = naive_lru(requests, BS, cap, last_token_rule=rule)
    assert int(run.cached_tokens.sum()) == want.cached_tokens
    assert int(run.found_blocks.sum()) == want.hit_blocks
    assert int((run.cached_tokens > 0).sum()) == want.hit_requests
    assert run.evicted_blocks == want.evicted_blocks


def test_lru_run_by_hand() -> None:
    reqs = [([1, 2, 3], 12), ([1, 2, 4], 12), ([1, 2, 3], 12)]
    run = lru_run(make_stream(reqs, BS), 3, last_token_rule=True)
    assert run.cached_tokens.tolist() == [0, 8, 8]
    assert run.found_blocks.tolist() == [0, 2, 2]
    assert run.evicted_blocks == 2
    with pytest.raises(ValueError):
        lru_run(make_stream(reqs, BS), -1)


def test_curve_equals_lru_run_on_mooncake() -> None:
    stream = mooncake_stream(MOONCAKE)
    curve = lru_curve(stream, last_token_rule=True)
    caps = sorted({0, 1, 2, 7, 100, 1000, 5000, 10000, 50000, curve.num_unique, curve.num_unique + 5,
                   *np.geomspace(1, curve.num_unique, 12).astype(int).tolist()})
    for cap in caps:
        run = lru_run(stream, cap, last_token_rule=True)
        point = curve.at(cap)
        assert point.cached_tokens == int(run.cached_tokens.sum()), cap
        assert point.hit_blocks == int(run.found_blocks.sum()), cap
        assert point.evicted_blocks == run.evicted_blocks, cap
