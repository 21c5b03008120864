"""Schedules: the log's timestamps sped up, constant and Poisson rates, the closed loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvern.infra.errors import UsageError
from kvern.live.pacing import Pacing, pacing_from_flags, schedule

ARRIVALS = np.array([10.0, 10.5, 12.0, 16.0])


def test_timestamps_are_shifted_to_zero_and_sped_up() -> None:
    assert schedule(Pacing("timestamps", speedup=2.0), ARRIVALS) == [0.0, 0.25, 1.0, 3.0]
    assert schedule(pacing_from_flags(None, None, None), ARRIVALS) == [0.0, 0.5, 2.0, 6.0]


def test_constant_rate_is_evenly_spaced() -> None:
    assert schedule(pacing_from_flags(None, "4:constant", None), ARRIVALS) == [0.0, 0.25, 0.5, 0.75]


def test_closed_loop_has_no_send_times() -> None:
    p = pacing_from_flags(None, None, 3)
    assert p == Pacing("closed", concurrency=3)
    assert schedule(p, ARRIVALS) == [None] * 4


def test_concurrency_caps_a_paced_run() -> None:
    assert pacing_from_flags(5.0, None, 2) == Pacing("timestamps", speedup=5.0, concurrency=2)


def test_poisson_is_seeded_and_has_the_rate() -> None:
    p = pacing_from_flags(None, "50", None)
    assert p.mode == "poisson"
    a = schedule(p, np.zeros(20_000))
    assert a == schedule(p, np.zeros(20_000))
    assert a[0] == 0.0
    assert np.all(np.diff(a) >= 0)
    assert abs((len(a) - 1) / a[-1] - 50) < 2.0  # 20k exponential gaps: rate within 4%


@pytest.mark.parametrize(("speedup", "rate", "conc", "flag"), [
    (1.0, "5", None, "--speedup"), (0.0, None, None, "--speedup"), (None, "0", None, "--rate"),
    (None, "x", None, "--rate"), (None, "5:burst", None, "--rate"), (None, None, 0, "--concurrency"),
])
def test_bad_flags_name_the_flag(speedup: float | None, rate: str | None, conc: int | None,
                                 flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        pacing_from_flags(speedup, rate, conc)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50).map(sorted),
       st.floats(0.01, 1000))
def test_timestamp_schedule_keeps_gaps_scaled(arrivals: list[float], speedup: float) -> None:
    out = np.array(schedule(Pacing("timestamps", speedup=speedup), np.array(arrivals)))
    assert out[0] == 0.0
    np.testing.assert_allclose(np.diff(out), np.diff(arrivals) / speedup, rtol=1e-9, atol=1e-6)
