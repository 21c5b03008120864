"""Hand-computed cases for each router; the reasoning is in the comments.

Blocks of 4 tokens (BS); a request is written as its block labels, chained into prefix keys,
so "ab" and "ac" share block a. Times: arrivals are 0, 1, 2, … seconds (make_trace).
"""

from __future__ import annotations

import numpy as np
import pytest

from kvern.cluster.routers import ROUTERS, RouteContext, make_router, parse_router_list
from kvern.infra.errors import UsageError
from tests.cluster.helpers import INSTANT, fleet, slow
from tests.sim.sim_helpers import BS, make_stream


def test_round_robin() -> None:
    stream = make_stream([(list("a"), 4)] * 7, BS)
    assert fleet(stream, "ideal", 3, 10, "round-robin").replica.tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_random_is_seeded() -> None:
    stream = make_stream([(list("a"), 4)] * 50, BS)
    a = fleet(stream, "ideal", 4, 10, "random").replica
    b = fleet(stream, "ideal", 4, 10, "random").replica
    c = fleet(stream, "ideal", 4, 10, "random", {"seed": 7}).replica
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert set(a.tolist()) == {0, 1, 2, 3}


def test_session_affinity_is_consistent() -> None:
    # The same session always lands on the same replica; growing the fleet from 3 to 4 moves
    # only sessions that now hash to the new replica's arcs (consistent hashing).
    reqs = [(list("a"), 4)] * 40
    sessions = [f"s{i % 10}" for i in range(40)]
    stream = make_stream(reqs, BS)
    three = fleet(stream, "ideal", 3, 10, "session", sessions=sessions).replica
    four = fleet(stream, "ideal", 4, 10, "session", sessions=sessions).replica
    for s in set(sessions):
        idx = [i for i, x in enumerate(sessions) if x == s]
        assert len(set(three[idx].tolist())) == 1
        assert four[idx[0]] in (three[idx[0]], 3)
    # without a session id the first block is the key: equal first blocks, same replica
    stream2 = make_stream([(list("ab"), 8), (list("cd"), 8), (list("ax"), 8)], BS)
    r = fleet(stream2, "ideal", 8, 10, "session").replica
    assert r[0] == r[2]


def test_least_loaded() -> None:
    # 1 token/s of prefill, nothing cached (distinct prompts), arrivals 0,1,2,3:
    # r0 (8 tok) -> replica 0 (tie, rotation starts at 0), busy until t=8;
    # r1 (4 tok) at t=1 -> replica 1 (0 outstanding), busy until t=5;
    # r2 (4 tok) at t=2: outstanding 7 vs 4 -> replica 1 (queued behind r1, until t=9);
    # r3 at t=3: replica 0 still has r0's 8 tokens pending, replica 1 r1's and r2's 4 + 4:
    #   a tie, which rotates after the previous request's replica (1) -> replica 0.
    stream = make_stream([(list("ab"), 8), (list("c"), 4), (list("d"), 4), (list("e"), 4)], BS)
    run = fleet(stream, "ideal", 2, 10, "least-loaded", tm=slow(1.0))
    assert run.replica.tolist() == [0, 1, 1, 0]
    # TTFT (FIFO per replica): r0 8 s; r1 4 s; r2 waits until t=5, then 4 s: 3+4 = 7 s;
    # r3 waits for r0 until t=8: 5 + 4 = 9 s.
    assert run.ttft_s.tolist() == [8.0, 4.0, 7.0, 9.0]


def test_prefix_routes_to_the_longest_exact_prefix() -> None:
    # r0 "abc" -> replica 0 (all empty: tie, rotation from 0); r1 "xy" -> replica 1 (no
    # prefix anywhere, tie rotates after 0); r2 "abd" shares "ab" with replica 0 -> 0;
    # r3 "xz" shares "x" with replica 1 -> 1.
    stream = make_stream([(list("abc"), 12), (list("xy"), 8), (list("abd"), 12), (list("xz"), 8)], BS)
    run = fleet(stream, "ideal", 2, 10, "prefix")
    assert run.replica.tolist() == [0, 1, 0, 1]
    assert run.gpu_tokens.tolist() == [0, 0, 8, 4]
    assert run.best_blocks.tolist() == [0, 0, 2, 1]


def test_dynamo_cost() -> None:
    # Decode at 1 s per token, 10 output tokens, so requests stay running; prefill instant.
    # r0 "ab" (8 tok) -> replica 0 (tie). r1 "ab" at t=1: replica 0 holds 2 blocks, cost =
    # 1 × (8 − 8)/4 + running blocks ceil((8+10)/4)=5 + own 2 = 7; replica 1: 1 × 2 + 0 + 2 = 4
    # -> replica 1 (load beats the overlap at weight 1). With weight 10: replica 0 costs
    # 0 + 5 + 2 = 7, replica 1 10 × 2 + 2 = 22 -> replica 0.
    stream = make_stream([(list("ab"), 8), (list("ab"), 8)], BS)
    outs = np.array([10, 10])
    tm = slow(1e18, decode_s_per_token=1.0)
    assert fleet(stream, "ideal", 2, 10, "dynamo", tm=tm, output_tokens=outs).replica.tolist() == [0, 1]
    heavy = fleet(stream, "ideal", 2, 10, "dynamo", {"overlap_score_weight": 10}, tm=tm, output_tokens=outs)
    assert heavy.replica.tolist() == [0, 0]


def test_dynamo_without_events_forgets_after_the_ttl() -> None:
    # kv_events=false: the router remembers what it routed for router_ttl_s. r0 "ab" -> 0;
    # r1 "cd" -> 1 (no overlap; tie on cost 2 rotates after 0); r2 "ab" at t=2: within a
    # 10 s TTL the router predicts replica 0 holds "ab" -> 0; with a 1.5 s TTL both entries
    # expired, so it sees no overlap: a tie that rotates after replica 1 to replica 0 — but
    # its estimate is now 0 blocks where replica 0 really holds 2: a false miss.
    stream = make_stream([(list("ab"), 8), (list("cd"), 8), (list("ab"), 8)], BS)
    keep = fleet(stream, "ideal", 2, 10, "dynamo", {"kv_events": False, "router_ttl_s": 10.0})
    assert keep.replica.tolist() == [0, 1, 0] and keep.estimate_blocks[2] == 2
    forget = fleet(stream, "ideal", 2, 10, "dynamo", {"kv_events": False, "router_ttl_s": 1.5})
    assert forget.estimate_blocks[2] == 0 and forget.exact_blocks[2] == 2


def test_sglang_threshold_and_smallest_tree() -> None:
    # r0 "abcd" (16 tok) -> the smallest tree (all empty: rotation from 0): replica 0.
    # r1 "abxy" matches "ab" on replica 0: rate 8/16 = 0.5, not > 0.5 -> smallest tree:
    #   replica 1 (0 blocks). r2 "abcz": replica 0 matches "abc" = 12/16 = 0.75 > 0.5 -> 0.
    stream = make_stream([(list("abcd"), 16), (list("abxy"), 16), (list("abcz"), 16)], BS)
    run = fleet(stream, "ideal", 2, 10, "sglang")
    assert run.replica.tolist() == [0, 1, 0]
    # with cache_threshold 0.4, r1's 0.5 is enough: replica 0
    run2 = fleet(stream, "ideal", 2, 10, "sglang", {"cache_threshold": 0.4})
    assert run2.replica.tolist() == [0, 0, 0]


def test_sglang_imbalance_override_and_false_hits() -> None:
    # Decode keeps requests running (1 s/token, 100 tokens). Thresholds abs 1, rel 1.0:
    # r0 -> 0; r1 "a…" matches replica 0 fully (rate 1) -> 0 (loads 1 vs 0: 1 − 0 = 1, not > 1);
    # r2: loads 2 vs 0: 2 > 1 and 2 > 0 -> imbalanced -> least loaded: replica 1.
    stream = make_stream([(list("ab"), 8)] * 3, BS)
    tm = slow(1e18, decode_s_per_token=1.0)
    run = fleet(stream, "ideal", 2, 10, "sglang", {"balance_abs_threshold": 1, "balance_rel_threshold": 1.0},
                tm=tm, output_tokens=np.full(3, 100))
    assert run.replica.tolist() == [0, 0, 1]
    # A replica of 2 blocks under a tree that never forgets: r2 "cd" evicts "ab" from the only
    # replica; r3 "ab" is predicted 2 blocks (a false hit) where the cache holds none.
    stream2 = make_stream([(list("ab"), 8), (list("cd"), 8), (list("ab"), 8)], BS)
    one = fleet(stream2, "ideal", 1, 2, "sglang")
    assert one.estimate_blocks[2] == 2 and one.exact_blocks[2] == 0


def test_llmd_scores() -> None:
    # r0 "abcd" -> 0 (all scores equal: prefix 0, queue 1, kv 1 -> rotation from 0).
    # r1 "abcd" at t=1, decode 1 s/token × 100 keeps r0 running on replica 0 with
    # ceil((16+100)/4) = 29 blocks of 40 -> kv util 0.725. Scores: replica 0 = 3 × 4/4 + 2 × 1
    # + 2 × 0.275 = 5.55; replica 1 = 0 + 2 + 2 = 4 -> replica 0. With prefix weight 1:
    # replica 0 = 1 + 2 + 0.55 = 3.55 < 4 -> replica 1.
    stream = make_stream([(list("abcd"), 16)] * 2, BS)
    tm = slow(1e18, decode_s_per_token=1.0)
    outs = np.full(2, 100)
    assert fleet(stream, "ideal", 2, 40, "llm-d", tm=tm, output_tokens=outs).replica.tolist() == [0, 0]
    low = fleet(stream, "ideal", 2, 40, "llm-d", {"prefix_weight": 1.0}, tm=tm, output_tokens=outs)
    assert low.replica.tolist() == [0, 1]


def test_llmd_lru_capacity_forgets() -> None:
    # lru_capacity_per_server = 2 blocks: after "abcd" the record keeps a, b (the head is the
    # most recent: touched tail -> head, the tail goes first); r1 "abcd" is estimated 2 blocks
    # where replica 0 holds all 4: a false miss.
    stream = make_stream([(list("abcd"), 16)] * 2, BS)
    run = fleet(stream, "ideal", 2, 40, "llm-d", {"lru_capacity_per_server": 2}, tm=INSTANT)
    assert run.replica.tolist() == [0, 0]
    assert run.estimate_blocks[1] == 2 and run.exact_blocks[1] == 4


def test_params_and_names() -> None:
    stream = make_stream([(list("a"), 4)], BS)
    ctx = RouteContext(2, stream, [None], 10, 0)
    named = make_router("sglang", ctx, {"cache_threshold": "0.3"}).display_name
    assert named == "sglang(cache_threshold=0.3)"
    assert make_router("dynamo", ctx, {"kv_events": "false"}).params["kv_events"] is False
    with pytest.raises(UsageError, match="valid: "):
        make_router("dynamo", ctx, {"nope": 1})
    with pytest.raises(UsageError, match="unknown router"):
        parse_router_list("prefix,bogus")
    assert set(ROUTERS) == {"round-robin", "random", "session", "least-loaded", "prefix", "dynamo", "sglang",
                            "llm-d"}
