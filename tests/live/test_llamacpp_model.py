"""The llama-server cache model on hand-worked sequences (the live tests check it on the server)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kvern.sim.profiles.llamacpp import (
    CHUNK,
    LlamaServerConfig,
    LlamaServerModel,
    lcp,
    make_seq,
    predict,
    seq_lcp,
)

A = np.arange(1, 11)                            # 10 tokens
B = np.concatenate([A[:5], np.arange(50, 55)])  # shares 5 with A
C = np.arange(100, 110)                         # shares nothing
D = np.arange(200, 210)


def test_lcp() -> None:
    assert lcp(A, A) == 10
    assert lcp(A, B) == 5
    assert lcp(A, C) == 0
    assert lcp(A[:3], A) == 3
    assert lcp(A[:0], A) == 0


def test_one_slot_reuse_last_token_and_host_cache() -> None:
    m = LlamaServerModel(LlamaServerConfig(slots=1))
    assert m.request(A, 1) == 0       # empty slot
    assert m.request(A, 1) == 9       # whole prompt cached: the last token is recomputed
    assert m.request(B, 1) == 5       # lcp 5/10 > 0.1 picks the slot; keeps 5/10, not < 0.5: no save
    assert m.request(C, 1) == 0       # no similar slot: LRU slot, B saved to the host cache
    assert [s.ids.tolist() for s in m.states] == [B.tolist()]
    b2 = np.concatenate([B, [7, 7]])
    assert m.request(b2, 1) == 10     # C saved; B loaded back (keeps 10/10 of it) and reused
    assert [s.ids.tolist() for s in m.states] == [C.tolist()]


def test_generated_tokens_stay_in_the_slot() -> None:
    m = LlamaServerModel(LlamaServerConfig(slots=1))
    m.request(A, 4)
    assert len(m.slots[0].tokens) == 13  # the prompt and 3 of the 4 generated tokens
    assert m.request(A, 4) == 9
    # A prompt that keeps under half of the slot's 13 tokens saves it first.
    assert m.request(A[:6], 1) == 5
    assert len(m.states) == 1 and len(m.states[0]) == 13


def test_two_slots_lru_choice_idle_saves_and_load() -> None:
    m = LlamaServerModel(LlamaServerConfig(slots=2))
    assert m.request(A, 1) == 0   # both unused: the LRU scan keeps the last, slot 1
    assert m.slots[1].tokens.ids.tolist() == A.tolist()
    assert m.request(C, 1) == 0   # slot 0 (never used); idle slot 1 (A) saved to the host cache
    assert m.request(A, 1) == 9   # slot 1 by similarity; idle slot 0 (C) saved
    assert [s.ids.tolist() for s in m.states] == [A.tolist(), C.tolist()]
    assert m.request(D, 1) == 0   # slot 0 by LRU; C is already cached, nothing loads
    assert m.request(C, 1) == 9   # slot 1 by LRU; C loaded from the host cache into it
    assert [s.ids.tolist() for s in m.states] == [A.tolist(), D.tolist()]


def test_cache_disabled_and_size_limit() -> None:
    off = predict([A, C, A], [1, 1, 1], LlamaServerConfig(slots=1, cache_tokens=0))
    assert off.tolist() == [0, 0, 0]
    on = predict([A, C, A], [1, 1, 1], LlamaServerConfig(slots=1))
    assert on.tolist() == [0, 0, 9]
    tight = LlamaServerModel(LlamaServerConfig(slots=1, cache_tokens=15))
    for p in (A, C, D):
        tight.request(p, 1)
    assert [s.ids.tolist() for s in tight.states] == [C.tolist()]  # A dropped to make room for C
    assert tight.dropped_states == 1


def test_one_token_prompt_repeated_is_recomputed() -> None:
    assert predict([A[:1], A[:1]], [1, 1], LlamaServerConfig()).tolist() == [0, 0]


prompts = st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=12), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(prompts, st.integers(1, 3))
def test_never_more_than_the_prompt_minus_one(ps: list[list[int]], slots: int) -> None:
    arrays = [np.array(p) for p in ps]
    out = predict(arrays, [2] * len(arrays), LlamaServerConfig(slots=slots))
    for p, c in zip(arrays, out, strict=True):
        assert 0 <= c <= len(p) - 1


@settings(max_examples=150, deadline=None)
@given(prompts)
def test_one_slot_without_host_cache_is_the_lcp_with_the_previous_prompt(ps: list[list[int]]) -> None:
    """With the host cache off, one slot only ever holds the previous request's tokens."""
    arrays = [np.array(p) for p in ps]
    out = predict(arrays, [1] * len(arrays), LlamaServerConfig(slots=1, cache_tokens=0))
    prev = np.empty(0, dtype=np.int64)
    for p, c in zip(arrays, out, strict=True):
        n = lcp(prev, p)
        expect = 0 if (n == 1 and len(p) == 1) else (n - 1 if n == len(p) else n)
        assert c == expect
        prev = p


def test_the_registered_profile_runs_the_same_model_through_the_simulator() -> None:
    """``kvern replay --profile llamacpp`` (no backend) gives what ``predict`` gives, token-exact."""
    import pyarrow as pa

    from kvern.ingest.blocks import token_block_keys
    from kvern.ingest.stream import block_streams
    from kvern.ingest.trace import TRACE_SCHEMA, Trace, TraceMeta, with_meta
    from kvern.sim.policies import make_policy
    from kvern.sim.profiles import get_profile

    rng = np.random.default_rng(1)
    doc = rng.integers(0, 50, 40)
    prompts = [np.concatenate([doc[: int(rng.integers(1, 40))], rng.integers(0, 50, int(rng.integers(0, 9)))])
               for _ in range(40)]
    meta = TraceMeta(block_size=16)
    table = pa.table({
        "request_id": [str(i) for i in range(40)], "arrival_s": [float(i) for i in range(40)],
        "model": ["m"] * 40, "session_id": [None] * 40, "prompt_tokens": [len(p) for p in prompts],
        "output_tokens": [None] * 40, "block_keys": [token_block_keys("m", p, 16) for p in prompts],
        "token_ids": [p.tolist() for p in prompts]}, schema=TRACE_SCHEMA)
    stream = block_streams(Trace(with_meta(table, meta), meta))["m"]
    res = get_profile("llamacpp").simulate(stream, make_policy("lru"), 8)
    expect = predict(prompts, [0] * 40, LlamaServerConfig(slots=1, cache_tokens=8 * 16))
    assert res.cached_tokens.tolist() == expect.tolist()
    assert res.cached_tokens.sum() > 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1), max_size=4 * CHUNK + 5),
       st.lists(st.integers(0, 1), max_size=4 * CHUNK + 5), st.integers(0, 4 * CHUNK))
def test_chunked_lcp_equals_the_plain_one(a: list[int], b: list[int], shared: int) -> None:
    x = np.array(a[:shared] + a, dtype=np.int64)
    y = np.array(a[:shared] + b, dtype=np.int64)
    assert seq_lcp(make_seq(x), make_seq(y)) == lcp(x, y)
