"""The queue policies (s3fifo, arc, sieve, gdsf, mru, slru) and followup: hand-computed cases, naive
models, and agreement with libCacheSim on flat streams (one block per request, where the prefix
rule is void and kvern must evict exactly what libCacheSim does)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import BS, aligned, as_list, make_stream, requests, run_engine

from kvern.sim.simulate import simulate

B = 10
NEW = ["s3fifo", "arc", "sieve", "gdsf", "mru", "slru", "followup"]


def flat(keys: list[int]) -> list:
    return [aligned([k], B) for k in keys]


def test_sieve_spares_a_visited_entry_and_keeps_its_place() -> None:
    # cap 2: A, B in; A hit (bit set). C: the hand starts at A (oldest), clears its bit and
    # passes, evicts B. D: the hand is past the newest, wraps to A (bit now clear): A goes.
    res = simulate(make_stream(flat([1, 2, 1, 3, 4, 1]), B), "sieve", 2, "ideal")
    assert as_list(res.cached_tokens) == [0, 0, 10, 0, 0, 0]


def test_mru_drops_the_most_recent_leaf_before_the_new_request_joins() -> None:
    # cap 2: A, B in. C evicts the most recent (B) before joining; A then hits; B misses.
    res = simulate(make_stream(flat([1, 2, 3, 1, 2]), B), "mru", 2, "ideal")
    assert as_list(res.cached_tokens) == [0, 0, 0, 10, 0]


def test_gdsf_drops_the_partial_tail_first() -> None:
    # [A, a] with a 3-token tail, then B: cost = tokens, so the tail (3) goes before A (10) and
    # before B; the next [A] hits.
    reqs = [(["A", "a"], 13), (["B"], 10), (["A"], 10)]
    res = simulate(make_stream(reqs, B), "gdsf", 2, "ideal")
    assert as_list(res.cached_tokens) == [0, 0, 10]


def test_s3fifo_one_hit_wonders_leave_through_the_small_queue() -> None:
    # cap 10: small 1, main 9. Before the first eviction, once the small queue holds one block
    # the rest go to main: 1 in small, 2..10 in main. 11 evicts from small (1, never hit) into
    # the ghost; 1 again is a ghost hit and enters main (main 10 > 9: the next eviction is main's
    # oldest, 2).
    keys = [*range(1, 12), 1, 12, 2]
    res = simulate(make_stream(flat(keys), B), "s3fifo", 10, "ideal")
    assert as_list(res.cached_tokens)[-3:] == [0, 0, 0]


def test_followup_keeps_the_conversation_that_continues() -> None:
    # Defaults behave as LRU until outcomes are known: with no history this equals LRU.
    reqs = [aligned("AB", B), aligned("C", B), aligned("ABD", B)]
    fu = simulate(make_stream(reqs, B), "followup", 3, "ideal")
    lru = simulate(make_stream(reqs, B), "lru", 3, "ideal")
    assert as_list(fu.cached_tokens) == as_list(lru.cached_tokens)


@settings(max_examples=60, deadline=None)
@given(requests(), st.sampled_from(NEW), st.integers(1, 10), st.sampled_from(["ideal", "vllm"]))
def test_cache_stays_within_capacity_and_prefix_closed(reqs: list, policy: str, capacity: int,
                                                       profile: str) -> None:
    stream = make_stream(reqs, BS)
    _res, engine = run_engine(profile, stream, policy, capacity)
    cache = set(engine.cached_blocks().tolist())
    assert engine.used <= capacity
    if profile == "ideal":
        assert all(stream.parent[b] < 0 or int(stream.parent[b]) in cache for b in cache)


# -- naive models on flat streams ----------------------------------------------------------------


def naive_sieve(keys: list[int], cap: int) -> int:
    """SIEVE read from the paper: a list (oldest first), visited bits, a hand index."""
    q: list[int] = []
    vis: dict[int, int] = {}
    hand: int | None = None
    hits = 0
    for k in keys:
        if k in vis:
            vis[k] = 1
            hits += 1
            continue
        if len(q) == cap:
            i = 0 if hand is None else hand
            while vis[q[i]]:
                vis[q[i]] = 0
                i = i + 1 if i + 1 < len(q) else 0
            victim = q.pop(i)
            del vis[victim]
            hand = i if i < len(q) else None
        q.append(k)
        vis[k] = 0
    return hits


def naive_gdsf(keys: list[int], cap: int) -> int:
    """Insert, then evict the lowest (priority, last use): the newcomer itself may go."""
    pri: dict[int, tuple[float, int]] = {}
    freq: dict[int, int] = {}
    aging, hits = 0.0, 0
    for t, k in enumerate(keys):
        if k in pri:
            hits += 1
            freq[k] += 1
        else:
            freq[k] = 1
        pri[k] = (aging + freq[k], t)
        if len(pri) > cap:
            victim = min(pri, key=lambda x: pri[x])
            aging = pri.pop(victim)[0]
            del freq[victim]
    return hits


def naive_mru(keys: list[int], cap: int) -> int:
    last: dict[int, int] = {}
    hits = 0
    for t, k in enumerate(keys):
        if k in last:
            hits += 1
        elif len(last) == cap:
            del last[max(last, key=lambda x: last[x])]
        last[k] = t
    return hits


def naive_slru(keys: list[int], cap: int, protected_ratio: float = 0.8) -> int:
    """Two LRU lists (oldest first); demotion from protected happens when an eviction is due."""
    prob: list[int] = []
    prot: list[int] = []
    size = int(cap * protected_ratio)
    hits = 0
    for k in keys:
        if k in prob or k in prot:
            hits += 1
            (prob if k in prob else prot).remove(k)
            prot.append(k)
            continue
        if len(prob) + len(prot) == cap:
            while len(prot) > size:
                prob.append(prot.pop(0))
            (prob if prob else prot).pop(0)
        prob.append(k)
    return hits


NAIVE = {"sieve": naive_sieve, "gdsf": naive_gdsf, "mru": naive_mru, "slru": naive_slru}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=80), st.sampled_from(sorted(NAIVE)),
       st.integers(1, 8))
def test_flat_stream_equals_the_naive_model(keys: list[int], policy: str, capacity: int) -> None:
    res = simulate(make_stream(flat(keys), B), policy, capacity, "ideal")
    assert int(np.count_nonzero(res.cached_tokens)) == NAIVE[policy](keys, capacity)


# -- libCacheSim -----------------------------------------------------------------------------------

LIBCACHESIM = {"s3fifo": "S3FIFO", "sieve": "Sieve", "gdsf": "GDSF"}


def _libcachesim_hits(name: str, keys: list[int], capacity: int) -> int:
    lcs = pytest.importorskip("libcachesim")
    cache = getattr(lcs, name)(cache_size=capacity)
    return sum(bool(cache.get(lcs.Request(obj_id=k + 1, obj_size=1))) for k in keys)


# Open: s3fifo still differs from libCacheSim below ~100 blocks (≤ 0.4 % of hits; sieve and gdsf are
# exact); strict xfail so that the day they agree the marker must go.
OPEN = pytest.mark.xfail(strict=True, reason="not yet identical to libCacheSim (issue 12, open)")


@pytest.mark.parametrize(("policy", "capacity"), [
    ("sieve", 20), ("sieve", 50), ("sieve", 200), ("s3fifo", 200),
    pytest.param("s3fifo", 20, marks=OPEN), pytest.param("s3fifo", 50, marks=OPEN),
    ("gdsf", 20), ("gdsf", 50), ("gdsf", 200)])
def test_flat_stream_agrees_with_libcachesim(policy: str, capacity: int) -> None:
    rng = np.random.default_rng(7)
    keys = (rng.zipf(1.2, 6000) % 1000).tolist()  # skewed, with a long tail of one-hit wonders
    res = simulate(make_stream(flat(keys), B), policy, capacity, "ideal")
    assert int(np.count_nonzero(res.cached_tokens)) == _libcachesim_hits(LIBCACHESIM[policy], keys, capacity)
