"""The vllm profile: hand-computed cases, and a literal port of vLLM's BlockPool as the oracle."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import BS, aligned, as_list, capped_infinite, make_stream, naive_vllm, requests, run_engine

from kvern.sim.policies import make_policy
from kvern.sim.profiles import get_profile
from kvern.sim.simulate import simulate


def test_partial_tail_is_never_cached_and_last_token_is_recomputed() -> None:
    # [a, b, p] with 10 tokens: p holds 2 tokens and never gets a hash; the hit is capped at
    # (10 − 1) // 4 = 2 blocks = 8 tokens, where the ideal profile serves all 10.
    reqs = [(list("abp"), 10), (list("abp"), 10)]
    vllm = simulate(make_stream(reqs, 4), "lru", 10, "vllm")
    ideal = simulate(make_stream(reqs, 4), "lru", 10, "ideal")
    assert as_list(vllm.cached_tokens) == [0, 8]
    assert as_list(ideal.cached_tokens) == [0, 10]


def test_block_aligned_repeat_recomputes_its_last_block_into_a_second_copy() -> None:
    # Pool of 3. r0 [a, b] (8 tokens) takes slots 0, 1; free queue after: [2, b@1, a@0].
    # r1 same: the hit stops at (8 − 1) // 4 = 1 block (a); b is recomputed into fresh slot 2
    #   and cached again: two copies of b, no eviction yet.
    # r2 same: a hits; the new block pops b's older copy (slot 1): the first eviction.
    # r3 [a, b, c]: a and b (the copy in slot 2) hit = 8 tokens; c pops the other b copy.
    reqs = [aligned("ab", 4)] * 3 + [aligned("abc", 4)]
    res = simulate(make_stream(reqs, 4), "lru", 3, "vllm")
    assert as_list(res.cached_tokens) == [0, 4, 4, 8]
    assert res.evicted_blocks == 2
    # The duplicate takes a block: the deduplicating ideal profile needs no eviction at all.
    assert simulate(make_stream(reqs, 4), "lru", 3, "ideal").evicted_blocks == 0


def test_one_token_prompt_never_hits() -> None:
    reqs = [(["a"], 1), (["a"], 1)]
    assert as_list(simulate(make_stream(reqs, 4), "lru", 4, "vllm").cached_tokens) == [0, 0]


def test_request_longer_than_the_pool_is_unschedulable_and_leaves_the_cache_alone() -> None:
    reqs = [aligned("ab", 4), aligned("abcd", 4), (list("abx"), 9)]
    res = simulate(make_stream(reqs, 4), "lru", 3, "vllm")
    assert as_list(res.unschedulable) == [0, 1, 0]
    assert as_list(res.cached_tokens) == [0, 0, 8]  # r1 did not touch a, b


def test_same_on_the_worked_sglang_sequence() -> None:
    # See test_sglang: the same trace under vLLM (pool of 4): duplicates of c cost two
    # evictions at r2, then r3 pops e.
    reqs = [aligned("abc", 4), aligned("abc", 4), aligned("de", 4), aligned("abc", 4)]
    res = simulate(make_stream(reqs, 4), "lru", 4, "vllm")
    assert as_list(res.cached_tokens) == [0, 8, 0, 8]
    assert res.evicted_blocks == 3


@settings(max_examples=150, deadline=None)
@given(requests(), st.integers(1, 12))
def test_lru_equals_a_literal_port_of_vllms_block_pool(reqs: list, capacity: int) -> None:
    res = simulate(make_stream(reqs, BS), "lru", capacity, "vllm")
    cached, unsched, evicted = naive_vllm(reqs, BS, capacity)
    assert as_list(res.cached_tokens) == cached
    assert as_list(res.unschedulable) == [int(u) for u in unsched]
    assert res.evicted_blocks == evicted


@settings(max_examples=60, deadline=None)
@given(requests(), st.sampled_from(["lru", "fifo", "lfu", "cost", "belady"]), st.integers(1, 12))
def test_every_policy_respects_the_pool_and_last_token(reqs: list, policy: str, capacity: int) -> None:
    res, engine = run_engine("vllm", make_stream(reqs, BS), policy, capacity)
    prompts = [p for _, p in reqs]
    for c, p, u in zip(as_list(res.cached_tokens), prompts, as_list(res.unschedulable), strict=True):
        assert c <= max(p - 1, 0) and c % BS == 0
        assert not u or c == 0
    assert engine.used <= capacity  # keyed slots can never outnumber the pool


@settings(max_examples=60, deadline=None)
@given(requests())
def test_an_unbounded_pool_hits_the_capped_leading_run(reqs: list) -> None:
    res = simulate(make_stream(reqs, BS), "lru", 10_000, "vllm")
    assert as_list(res.cached_tokens) == capped_infinite(reqs, BS)


@settings(max_examples=150, deadline=None)
@given(requests(), st.integers(1, 12))
def test_lru_free_queue_equals_the_policy_generic_heap_engine(reqs: list, capacity: int) -> None:
    stream = make_stream(reqs, BS)
    queue = get_profile("vllm").simulate(stream, make_policy("lru"), capacity)
    generic = get_profile("vllm")
    generic.lru_queue = False
    heap = generic.simulate(stream, make_policy("lru"), capacity)
    assert as_list(queue.cached_tokens) == as_list(heap.cached_tokens)
    assert as_list(queue.unschedulable) == as_list(heap.unschedulable)
    assert queue.evicted_blocks == heap.evicted_blocks
