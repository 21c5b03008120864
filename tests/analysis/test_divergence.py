"""Divergence search: hand-computed cases and a brute-force reference over all earlier prompts."""

from __future__ import annotations

import numpy as np
from analysis_helpers import make_trace
from hypothesis import given, settings
from hypothesis import strategies as st

from kvern.analysis.divergence import MAX_SPAN, WINDOW, Divergence, realign, scan
from kvern.sim.bounds import infinite_cache_hits

A = list(range(100, 140))  # 40 distinct tokens


def test_swapped_token() -> None:
    b = A.copy()
    b[6] = 999
    s = scan(make_trace([A, b], block_size=4))
    # B holds A's block 0; inside block 1 it agrees on 2 tokens, so it diverges at token 6; one
    # token differs on each side and the remaining 40 - 7 = 33 agree again.
    assert s.divergences == [Divergence("m", 1, 0, 6, 1, 1, 33)]
    assert (s.prompt_tokens, s.hit_tokens, s.lost_tokens, s.cacheable_tokens) == (80, 4, 33, 37)


def test_inserted_and_deleted_field() -> None:
    ins = [*A[:10], 7, 7, 7, *A[10:]]
    dele = A[:10] + A[13:]
    s = scan(make_trace([A, ins, dele], block_size=4))
    # ``dele`` is nearer to ``ins`` (both share 10 tokens; the most recent wins).
    assert s.divergences == [Divergence("m", 1, 0, 10, 3, 0, 30), Divergence("m", 2, 1, 10, 0, 6, 27)]


def test_extension_prefix_repeat_and_new_content_are_not_divergences() -> None:
    prompts = [A, [*A, 1, 2, 3], A[:22], A, A[:8] + list(range(500, 532)), A[:16]]
    s = scan(make_trace(prompts, block_size=4))
    assert s.divergences == []
    # Hits: 0, 40, 20 (A[:22]: 5 full blocks, tail new), 40, 8, 16.
    assert s.hit_tokens == 124


def test_models_are_separate_and_hash_traces_skipped() -> None:
    b = A.copy()
    b[20] = 0
    s = scan(make_trace([A, b], models=["x", "y"], block_size=4))
    assert s.divergences == [] and s.hit_tokens == 0
    h = scan(make_trace([A, b], block_size=4, with_tokens=False))
    assert h.divergences == [] and h.skipped_models == ("m",) and h.hit_tokens == 20


def test_rows_without_token_ids_are_never_compared() -> None:
    b = A.copy()
    b[6] = 999
    c = A.copy()
    c[6] = 998
    s = scan(make_trace([A, b, c], block_size=4, with_tokens=[False, True, True]))
    # b could only be compared with A, whose tokens are unknown; c is compared with b.
    assert s.divergences == [Divergence("m", 2, 1, 6, 1, 1, 33)]


def test_nearest_is_longest_common_then_most_recent() -> None:
    c1 = [*A[:12], 1, *A[13:]]
    c2 = [*A[:14], 2, *A[15:]]
    c3 = [*A[:14], 3, *A[15:]]
    q = [*A[:14], 4, *A[15:]]
    s = scan(make_trace([c1, c2, c3, q], block_size=4))
    assert s.divergences[-1] == Divergence("m", 3, 2, 14, 1, 1, 25)


def test_realign_prefers_least_edit() -> None:
    assert WINDOW == 16
    a = np.array([9, *range(1, 21)])
    b = np.arange(1, 21)
    assert realign(a, b) == (1, 0, 20)
    assert realign(a[:16], b) is None  # fewer than WINDOW tokens agree again
    assert realign(np.arange(3), np.arange(4)) is None


# -- brute-force reference ------------------------------------------------------------------


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _realign_ref(a: list[int], b: list[int]) -> tuple[int, int, int] | None:
    found = [(i + j, max(i, j), i, j) for i in range(MAX_SPAN + 1) for j in range(MAX_SPAN + 1)
             if (i, j) != (0, 0) and i + WINDOW <= len(a) and j + WINDOW <= len(b)
             and a[i:i + WINDOW] == b[j:j + WINDOW]]
    if not found:
        return None
    _, _, i, j = min(found)
    return i, j, _common(a[i:], b[j:])


def _reference(prompts: list[list[int]], models: list[str], bs: int) -> list[Divergence]:
    out = []
    for r, t in enumerate(prompts):
        earlier = [q for q in range(r) if models[q] == models[r]]
        c = {q: _common(t, prompts[q]) for q in earlier}
        if not earlier or any(v >= len(t) for v in c.values()):
            continue  # first of its model, or a repeat / prefix of an earlier prompt
        d = max(v // bs for v in c.values())
        cands = [q for q in earlier if d * bs <= c[q] < len(prompts[q])]
        if not cands:
            continue
        best = max(cands, key=lambda q: (c[q], q))
        pos = c[best]
        found = _realign_ref(t[pos:], prompts[best][pos:])
        if found is not None:
            out.append(Divergence(models[r], r, best, pos, *found))
    return out


@st.composite
def _prompts(draw: st.DrawFn) -> tuple[list[list[int]], list[str]]:
    tok = st.integers(0, 3)
    prompts: list[list[int]] = []
    for _ in range(draw(st.integers(2, 8))):
        if prompts and draw(st.integers(0, 3)):
            p = list(draw(st.sampled_from(prompts)))
            for _ in range(draw(st.integers(0, 2))):
                i = draw(st.integers(0, len(p)))
                op = draw(st.sampled_from(["swap", "insert", "delete", "cut", "append"]))
                if op == "swap" and i < len(p):
                    p[i] = draw(tok)
                elif op == "insert":
                    p[i:i] = draw(st.lists(tok, max_size=4))
                elif op == "delete":
                    del p[i:i + draw(st.integers(1, 4))]
                elif op == "cut":
                    p = p[:i]
                else:
                    p += draw(st.lists(tok, max_size=12))
        else:
            p = draw(st.lists(tok, min_size=draw(st.sampled_from([0, 24])), max_size=60))
        prompts.append(p)
    models = draw(st.lists(st.sampled_from(["a", "a", "b"]), min_size=len(prompts), max_size=len(prompts)))
    return prompts, models


@settings(max_examples=300, deadline=None)
@given(case=_prompts(), bs=st.sampled_from([1, 2, 4, 16]))
def test_scan_matches_brute_force(case: tuple[list[list[int]], list[str]], bs: int) -> None:
    prompts, models = case
    got = scan(make_trace(prompts, models=models, block_size=bs)).divergences
    # scan lists per model; the reference in trace order.
    assert sorted(got, key=lambda d: d.row) == _reference(prompts, models, bs)


@settings(max_examples=100, deadline=None)
@given(case=_prompts(), bs=st.sampled_from([1, 4, 16]), tokens=st.booleans())
def test_hits_equal_the_ingest_bound(case: tuple[list[list[int]], list[str]], bs: int, tokens: bool) -> None:
    """The scan's infinite-cache hits are ``kvern.sim.bounds.infinite_cache_hits``, summed."""
    trace = make_trace(case[0], models=case[1], block_size=bs, with_tokens=tokens)
    s = scan(trace)
    assert s.hit_tokens == int(infinite_cache_hits(trace).sum())
    assert s.prompt_tokens == sum(len(p) for p in case[0])
