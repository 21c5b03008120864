"""The trace profile: hand-computed distributions and reuse distances."""

from __future__ import annotations

import numpy as np
from analysis_helpers import make_trace

from kvern.analysis.trace_profile import Distribution, Histogram, profile

A = [1, 2, 3, 4, 5, 6, 7, 8]
B = [9, 9, 9, 9]


def test_profile_hand_computed() -> None:
    p = profile(make_trace([A, A, B, A], block_size=4, sessions=["s1", "s1", None, "s2"]))
    # LRU stack distances (blocks touched tail -> head): r1 finds A0 at 1, A1 at 2; r3 finds
    # A0 at 2 and A1 at 3 (B0 came between).
    assert p.reuse_distance == Distribution(4, 2.0, 2.0, 3.0, 3.0, 3.0)
    assert p.capacity_for_reuses == {"50%": 2, "90%": 3, "99%": 3}
    assert p.reuse_hist == Histogram([0, 1, 2, 4], [0, 1, 3])
    assert p.sessions == 2 and p.requests_per_session == Distribution(2, 1.5, 1.0, 2.0, 2.0, 2.0)
    assert p.session_sizes == {1: 1, 2: 1}
    assert p.prompt_tokens == Distribution(4, 7.0, 8.0, 8.0, 8.0, 8.0)
    assert p.prompt_hist == Histogram([0, 1, 2, 4, 8, 16], [0, 0, 0, 1, 3])
    assert p.infinite_token_hit_rate == 16 / 28 and p.infinite_request_hit_rate == 0.5
    assert p.summary.total.requests == 4
    assert p.to_dict()["capacity_for_reuses"] == {"50%": 2, "90%": 3, "99%": 3}


def test_distribution_weighted_and_empty() -> None:
    d = Distribution.of(np.array([10, 1, 5]), np.array([1, 0, 3]))
    assert d == Distribution(4, 6.25, 5.0, 10.0, 10.0, 10.0)
    assert Distribution.of(np.array([])) == Distribution(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    p = profile(make_trace([A], block_size=4))
    assert p.sessions == 0 and p.session_sizes == {} and p.reuse_distance.count == 0
    assert p.capacity_for_reuses == {}
