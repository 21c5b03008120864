"""Hand-computed cases for every policy (``ideal`` profile, so only the policy differs).

Single-block prompts of 10 tokens behave like a plain object cache; the deeper cases check the
prefix rule and the tie-break (deeper first).
"""

from __future__ import annotations

import pytest
from sim_helpers import aligned, as_list, make_stream

from kvern.infra.errors import UsageError
from kvern.sim.policies import POLICIES, make_policy, parse_policy_list
from kvern.sim.simulate import simulate

BS = 10
SEQ = [aligned(x, BS) for x in ("A", "B", "A", "C", "B", "A")]


@pytest.mark.parametrize(("policy", "expected"), [
    # r3 C overflows {A, B, C}: lru drops B (last use r1); r4 B drops A (r2); r5 A drops C.
    ("lru", [0, 0, 10, 0, 0, 0]),
    # fifo drops A (inserted r0), so B hits at r4; r5 A drops B (inserted r1).
    ("fifo", [0, 0, 10, 0, 10, 0]),
    # lfu: A has 2 uses; B and C tie at 1, the older use (B) goes; r4 drops C, r5 A hits.
    ("lfu", [0, 0, 10, 0, 0, 10]),
    # cost: equal block costs c; B (c) and C (c) tie, lower id (B) goes, L = c; r4 B = 2c,
    # C = c goes; r5 A (2c) hits.
    ("cost", [0, 0, 10, 0, 0, 10]),
    # belady: at r3 C is never used again, so it goes; B and A then both hit.
    ("belady", [0, 0, 10, 0, 10, 10]),
])
def test_flat_sequence(policy: str, expected: list[int]) -> None:
    res = simulate(make_stream(SEQ, BS), policy, 2, "ideal")
    assert as_list(res.cached_tokens) == expected
    assert res.evicted_blocks == 4 - 2 + (expected.count(0) - 4)  # misses − capacity held at the end


def test_lru_evicts_the_deeper_block_of_a_request_first() -> None:
    # [A, A1] then [B]: A and A1 share the request time; deeper first drops A1, keeps A.
    reqs = [aligned("A1", BS), aligned("B", BS), aligned("A1", BS)]
    res = simulate(make_stream(reqs, BS), "lru", 2, "ideal")
    assert as_list(res.cached_tokens) == [0, 0, 10]


def test_cost_keeps_the_deep_expensive_prefix_that_lru_drops() -> None:
    # attn_ratio 1: a 10-token block at depth d costs 10 + 100d + 45 → 55, 155, 255.
    # r1: leaves A2 (255) and B (55): cost drops B (L = 55); r2: C = 110 < A2, drops C.
    # LRU drops A2, then A1, and only A is left for r3.
    reqs = [aligned("XYZ", BS), aligned("B", BS), aligned("C", BS), aligned("XYZ", BS)]
    cost = simulate(make_stream(reqs, BS), "cost", 3, "ideal", {"attn_ratio": 1})
    lru = simulate(make_stream(reqs, BS), "lru", 3, "ideal")
    assert as_list(cost.cached_tokens) == [0, 0, 0, 30]
    assert as_list(lru.cached_tokens) == [0, 0, 0, 10]


def test_lfu_half_life_forgets_old_uses() -> None:
    # A used at r0, r1; B at r2. Without decay A (2) beats B (1); with a half-life of one
    # request A weighs 2^-2 + 2^-1 = 0.75 < 1 at r2, so A goes and r3 misses.
    reqs = [aligned("A", BS), aligned("A", BS), aligned("B", BS), aligned("A", BS)]
    plain = simulate(make_stream(reqs, BS), "lfu", 1, "ideal")
    decayed = simulate(make_stream(reqs, BS), "lfu", 1, "ideal", {"half_life": 1})
    assert as_list(plain.cached_tokens) == [0, 10, 0, 10]
    assert as_list(decayed.cached_tokens) == [0, 10, 0, 0]
    assert decayed.policy_label == "lfu(half_life=1)"


def test_belady_drops_a_block_never_used_again_at_once() -> None:
    reqs = [aligned("A", BS), aligned("B", BS), aligned("A", BS)]
    res = simulate(make_stream(reqs, BS), "belady", 1, "ideal")
    assert as_list(res.cached_tokens) == [0, 0, 10]  # B (never again) went, A stayed


def test_unknown_parameter_fails_listing_the_valid_ones() -> None:
    with pytest.raises(UsageError, match=r"unknown parameter 'decay' \(valid: half_life\)"):
        make_policy("lfu", {"decay": 3})
    with pytest.raises(UsageError, match="positive number"):
        make_policy("lfu", {"half_life": -1})
    with pytest.raises(UsageError, match="unknown policy 'lrfu'"):
        parse_policy_list("lru,lrfu")
    assert parse_policy_list("lru, lfu,lru") == ["lru", "lfu"]
    assert set(POLICIES) == {"lru", "fifo", "lfu", "cost", "belady", "s3fifo", "arc", "sieve", "gdsf", "mru",
                             "slru", "followup"}


def test_params_become_part_of_the_display_name() -> None:
    assert make_policy("lru").display_name == "lru"
    assert make_policy("lfu", {"half_life": "50"}).display_name == "lfu(half_life=50)"


def test_the_dispatch_table_gives_each_policy_its_priorities() -> None:
    # What an engine's loop calls: policy_touch(code, state, entry, block, t, occ, new).
    from kvern.sim.policies import PolicyContext
    from kvern.sim.policies.kernels import policy_evicted, policy_touch

    stream = make_stream([aligned("AB", BS), aligned("A", BS)], BS)

    def bound(name: str, params: dict | None = None):  # type: ignore[no-untyped-def]
        policy = make_policy(name, params)
        state = policy.state(PolicyContext(stream, stream.num_unique))
        return (lambda *a: policy_touch(policy.code, state, *a)), (
            lambda p1: policy_evicted(policy.code, state, 0, 0, p1))

    touch, _ = bound("lfu")
    assert touch(0, 0, 0, 0, True) == (1.0, 0.0)
    assert touch(0, 0, 1, 2, False) == (2.0, 1.0)
    touch, evicted = bound("cost", {"attn_ratio": 1})
    assert touch(1, 1, 0, 1, True) == (155.0, 0.0)  # 10 tokens at depth 1: 10 + 100 + 45
    evicted(155.0)
    assert touch(0, 0, 1, 2, True) == (155.0 + 55.0, 0.0)  # aged by L = 155
    touch, _ = bound("belady")
    assert touch(0, 0, 0, 0, True) == (-1.0, 0.0)  # A is next used at request 1
    assert touch(1, 1, 0, 1, True) == (-2.0, 0.0)  # B never again (= number of requests)
