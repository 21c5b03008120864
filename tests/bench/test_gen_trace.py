"""The benchmark trace generator and the 16-token expansion keep keys naming whole prefixes."""

from __future__ import annotations

import numpy as np

from benchmarks.gen_trace import GenParams, HashTrace, expand_blocks, generate


def _parents_consistent(t: HashTrace) -> bool:
    """Every id has one parent (the id before it) and one depth, in every request holding it."""
    seen: dict[int, tuple[int, int]] = {}
    for r in range(t.num_requests):
        ids = t.hash_ids[t.offsets[r] : t.offsets[r + 1]].tolist()
        for i, h in enumerate(ids):
            key = (ids[i - 1] if i else -1, i)
            if seen.setdefault(h, key) != key:
                return False
    return True


def test_generated_trace_is_prefix_chained_and_shares_prefixes() -> None:
    t = generate(GenParams(sessions=60, documents=20, system_prompts=5, seed=3))
    assert _parents_consistent(t)
    assert np.all(np.diff(t.timestamp_ms) >= 0)
    lengths = np.diff(t.offsets)
    assert np.array_equal(lengths, -(-t.input_length // t.block_size))
    assert len(np.unique(t.hash_ids)) < 0.5 * t.num_accesses  # system prompts and history repeat
    again = generate(GenParams(sessions=60, documents=20, system_prompts=5, seed=3))
    assert np.array_equal(t.hash_ids, again.hash_ids)


def test_expand_to_16_token_blocks() -> None:
    # Two requests sharing their first 512-token id; the second ends 100 tokens into id 7.
    t = HashTrace(512, np.array([0, 2, 4]), np.array([5, 6, 5, 7]), np.array([1024, 612]),
                  np.array([1, 1]), np.array([0, 1]))
    e = expand_blocks(t, 16)
    assert np.diff(e.offsets).tolist() == [64, 39]  # 612 = 38 × 16 + 4
    a = e.hash_ids[: 64]
    b = e.hash_ids[64:]
    assert np.array_equal(a[:32], b[:32])  # the shared 512 tokens
    assert not np.isin(b[32:], a).any()
    assert b[-1] != b[-2] and len(set(b.tolist())) == 39
    assert _parents_consistent(e)
