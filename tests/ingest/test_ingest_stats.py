"""infinite_cache_hits and the ingest summary, by hand and against a brute-force model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_helpers import ingest_rows

from kvern.infra.config import Config, IngestConfig
from kvern.sim.bounds import infinite_cache_hits, summarize


def _trace(tmp_path: Path, prompts: list[tuple[str, list[int]]], bs: int):  # type: ignore[no-untyped-def]
    rows = [{"model": m, "prompt_token_ids": ids, "timestamp": i} for i, (m, ids) in enumerate(prompts)]
    return ingest_rows(tmp_path, rows, Config(ingest=IngestConfig(block_size=bs)))


def _brute(prompts: list[tuple[str, list[int]]], bs: int) -> list[int]:
    """Blocks as literal prefixes: block i of p is p[:min((i+1)·bs, len p)]; seen = an earlier
    request of the same model had that exact block."""
    seen: set[tuple[str, tuple[int, ...]]] = set()
    out = []
    for model, p in prompts:
        blocks = [(model, tuple(p[: min((i + 1) * bs, len(p))])) for i in range(-(-len(p) // bs))]
        run = 0
        while run < len(blocks) and blocks[run] in seen:
            run += 1
        out.append(min(len(p), run * bs))
        seen.update(blocks)
    return out


def test_by_hand(tmp_path: Path) -> None:
    prompts = [("a", [1, 2, 3, 4, 5]),  # nothing seen: 0
               ("a", [1, 2, 3, 4, 5]),  # exact repeat, partial tail included: 5
               ("a", [1, 2, 3]),        # (1,2) seen; the tail (3) was inside a full block before: 2
               ("a", [1, 2, 3, 9]),     # (1,2) seen, (3,9) not: 2
               ("a", [1, 2, 3]),        # now the tail (3) was seen as a tail: 3
               ("b", [1, 2])]           # another model has its own cache: 0
    t = _trace(tmp_path, prompts, 2)
    assert infinite_cache_hits(t).tolist() == [0, 5, 2, 2, 3, 0]
    s = summarize(t)
    assert [m.model for m in s.models] == ["a", "b"]
    a = s.models[0]
    assert (a.requests, a.prompt_tokens, a.infinite_cache_tokens) == (5, 20, 12)
    assert (a.blocks, a.unique_blocks) == (3 + 3 + 2 + 2 + 2, 5)
    assert a.infinite_cache_hit_rate == 12 / 20
    assert s.total.requests == 6 and s.total.prompt_tokens == 22 and s.total.unique_blocks == 6
    assert (a.p50_prompt_tokens, a.p99_prompt_tokens) == (4.0, 5.0)


_prompt = st.lists(st.integers(0, 3), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), _prompt), min_size=1, max_size=12), st.integers(1, 4))
def test_against_brute_force(tmp_path_factory, prompts: list[tuple[str, list[int]]], bs: int) -> None:  # type: ignore[no-untyped-def]
    t = _trace(tmp_path_factory.mktemp("s"), prompts, bs)
    got = infinite_cache_hits(t)
    assert got.dtype == np.int64
    assert got.tolist() == _brute(prompts, bs)
