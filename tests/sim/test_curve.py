"""The one-pass LRU curve equals an LRU prefix-cache simulation at every capacity."""

from __future__ import annotations

import numpy as np
import pytest
from curve_helpers import Request, make_stream, naive_lru, prefix_requests
from hypothesis import given, settings
from hypothesis import strategies as st

from kvern.sim.curve import lru_curve

BS = 4


def _check_all_capacities(requests: list[Request], block_size: int, rule: bool) -> None:
    curve = lru_curve(make_stream(requests, block_size), last_token_rule=rule)
    for cap in range(curve.num_unique + 2):
        want = naive_lru(requests, block_size, cap, last_token_rule=rule)
        got = curve.at(cap)
        assert (got.cached_tokens, got.hit_requests, got.hit_blocks, got.evicted_blocks) == (
            want.cached_tokens, want.hit_requests, want.hit_blocks, want.evicted_blocks), cap
        assert got.hit_ratio_sum == pytest.approx(want.hit_ratio_sum, rel=1e-12, abs=1e-12)


def test_shared_prefix_by_hand() -> None:
    # r0 leaves the stack 1,2,3 (head most recent); r1 finds 1 at distance 1 and 2 at 2, then
    # the stack is 1,2,4,3; r2 finds 1,2 at 1,2 and 3 at distance 4.
    reqs = [([1, 2, 3], 12), ([1, 2, 4], 12), ([1, 2, 3], 12)]
    curve = lru_curve(make_stream(reqs, BS))
    assert curve.cached_tokens.tolist() == [0, 8, 16, 16, 20]
    assert curve.hit_requests.tolist() == [0, 2, 2, 2, 2]
    assert curve.hit_blocks.tolist() == [0, 2, 4, 4, 5]
    assert curve.at(3).evicted_blocks == 2  # r1 evicts 3, r2 evicts 4
    assert curve.at(10).cached_tokens == 20  # above the unique blocks: the infinite cache
    assert curve.at(10).evicted_blocks == 0
    capped = lru_curve(make_stream(reqs, BS), last_token_rule=True)
    assert capped.cached_tokens.tolist() == [0, 8, 16, 16, 19]
    _check_all_capacities(reqs, BS, rule=False)
    _check_all_capacities(reqs, BS, rule=True)


def test_request_larger_than_capacity_keeps_its_head() -> None:
    reqs = [([1, 2, 3, 4], 16), ([1, 2, 3, 4], 16)]
    curve = lru_curve(make_stream(reqs, BS))
    assert curve.cached_tokens.tolist() == [0, 4, 8, 12, 16]
    assert lru_curve(make_stream(reqs, BS), last_token_rule=True).cached_tokens[-1] == 15
    assert curve.at(2).evicted_blocks == 0  # only the head 1,2 is ever admitted
    assert curve.at(1).evicted_blocks == 0
    _check_all_capacities(reqs, BS, rule=True)


def test_partial_tail_counts_its_tokens() -> None:
    reqs = [([1, 2], 6), ([1, 2], 6)]
    assert lru_curve(make_stream(reqs, BS)).cached_tokens.tolist() == [0, 4, 6]
    assert lru_curve(make_stream(reqs, BS), last_token_rule=True).cached_tokens.tolist() == [0, 4, 5]


def test_one_token_prompt_under_last_token_rule_is_no_hit() -> None:
    reqs = [([1], 1), ([1], 1)]
    curve = lru_curve(make_stream(reqs, BS), last_token_rule=True)
    assert curve.cached_tokens.tolist() == [0, 0]
    assert curve.hit_requests.tolist() == [0, 0]
    assert curve.hit_blocks.tolist() == [0, 1]


def test_many_repeats_force_time_slot_compaction() -> None:
    # 4 unique blocks but 600 accesses: the time slots are renumbered many times over.
    reqs: list[Request] = [([1, 2], 8), ([1, 3], 8)] * 100 + [([1, 2, 5], 12)]
    reqs = [([1], 4), *reqs]
    _check_all_capacities(reqs, BS, rule=False)


def test_empty_stream() -> None:
    curve = lru_curve(make_stream([([1], 3)], BS))
    assert curve.cached_tokens.tolist() == [0, 0]
    assert curve.capacity_for(1) is None
    assert curve.capacity_for(0) == 0


@settings(max_examples=150, deadline=None)
@given(prefix_requests(block_size=BS), st.booleans())
def test_curve_equals_naive_lru_at_every_capacity(requests: list[Request], rule: bool) -> None:
    _check_all_capacities(requests, BS, rule)


@settings(max_examples=60, deadline=None)
@given(prefix_requests(block_size=1))
def test_token_level_streams(requests: list[Request]) -> None:
    _check_all_capacities(requests, 1, rule=True)


@settings(max_examples=60, deadline=None)
@given(prefix_requests(block_size=BS))
def test_curve_is_monotone_and_ends_at_the_infinite_cache(requests: list[Request]) -> None:
    curve = lru_curve(make_stream(requests, BS))
    assert np.all(np.diff(curve.cached_tokens) >= 0)
    assert np.all(np.diff(curve.hit_requests) >= 0)
    # Infinite cache: every block seen before is found, as counted directly.
    seen: set[int] = set()
    want = 0
    for keys, prompt in requests:
        found = 0
        while found < len(keys) and keys[found] in seen:
            found += 1
        want += min(found * BS, prompt)
        seen.update(keys)
    assert curve.cached_tokens[-1] == want


def test_mark_counts_agree_with_a_prefix_sum_at_every_level() -> None:
    from kvern.sim.curve import _marks_before, _set_mark

    slots = (1 << 25) + 123  # reaches the top level (16,777,216 slots per entry)
    rng = np.random.default_rng(7)
    marks = np.zeros(slots, np.int8)
    counts = [np.zeros((slots >> sh) + 1, np.int32) for sh in (6, 12, 18, 24)]
    on = rng.choice(slots, 20_000, replace=False)
    for t in on:
        _set_mark(marks, *counts, int(t), 1)
    for t in on[:5_000]:
        _set_mark(marks, *counts, int(t), -1)
    want = np.concatenate([[0], np.cumsum(marks, dtype=np.int64)])
    probes = [0, 1, 63, 64, 4095, 4096, 1 << 18, (1 << 24) - 1, 1 << 24, slots - 1,
              *rng.integers(0, slots, 300).tolist()]
    for t in probes:
        assert _marks_before(marks, *counts, t) == want[t], t
