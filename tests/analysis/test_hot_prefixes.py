"""Hot prefixes: hand-computed tree and a reference over explicit token prefixes."""

from __future__ import annotations

from collections import Counter

from analysis_helpers import byte_decode, make_trace
from hypothesis import given, settings
from hypothesis import strategies as st

from kvern.analysis.hot_prefixes import hot_prefixes
from kvern.ingest.blocks import token_block_keys

SYS = [100, 101, 102, 103, 104, 105, 106, 107]  # two blocks of 4


def test_hand_computed_tree() -> None:
    a, b, c = [1, 2, 3, 4], [5, 6, 7, 8], [9, 9, 9, 9]
    prompts = [SYS + a, SYS + b, SYS + a + c, SYS + b]
    hot = hot_prefixes(make_trace(prompts, block_size=4), top=10)
    # The system prompt (2 blocks, always together: one node) is held by 4 requests: 3 reuses
    # × 8 tokens; SYS+a and SYS+b by 2 each: 1 × 12. SYS+a+c is never reused.
    assert [(h.depth_tokens, h.reuses, h.tokens_saved, h.parent, h.row) for h in hot] == [
        (8, 3, 24, None, 0), (12, 1, 12, 0, 0), (12, 1, 12, 0, 1)]
    assert hot[0].key == f"{token_block_keys('m', SYS, 4)[-1]:016x}"
    assert all(h.text is None for h in hot)
    assert "text" not in hot[0].to_dict()
    assert hot_prefixes(make_trace(prompts, block_size=4), top=1) == hot[:1]


def test_text_only_when_decoding() -> None:
    prompts = [list(b"You are kind. Hi"), list(b"You are kind. Yo"), list(b"You are kind. Hi!")]
    hot = hot_prefixes(make_trace(prompts, block_size=4), top=5, decode=byte_decode)
    assert [(h.text, h.parent) for h in hot] == [("You are kind", None), (". Hi", 0)]


def test_models_apart() -> None:
    hot = hot_prefixes(make_trace([SYS, SYS, SYS], models=["x", "y", "x"], block_size=4))
    assert [(h.model, h.reuses) for h in hot] == [("x", 1)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), max_size=14), min_size=1, max_size=10),
       st.sampled_from([1, 2, 4]))
def test_matches_reference(prompts: list[list[int]], bs: int) -> None:
    # Reference: every prefix ending at a block boundary (or a prompt's end), counted per request.
    count: Counter[tuple[int, ...]] = Counter()
    for p in prompts:
        for end in sorted({*range(bs, len(p) + 1, bs), len(p)} - {0}):
            count[tuple(p[:end])] += 1
    children: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for pre in count:
        parent_len = (len(pre) - 1) // bs * bs
        if parent_len:
            children.setdefault(pre[:parent_len], []).append(pre)
    expect = sorted(
        ((n - 1) * len(pre), len(pre)) for pre, n in count.items()
        if n > 1 and not (len(children.get(pre, [])) == 1 and count[children[pre][0]] == n)
    )
    got = hot_prefixes(make_trace(prompts, block_size=bs), top=10_000)
    assert sorted((h.tokens_saved, h.depth_tokens) for h in got) == expect
    for h in got:
        assert h.parent is None or got[h.parent].depth_tokens < h.depth_tokens
