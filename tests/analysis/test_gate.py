"""The gate's verdict (pure) and its baseline file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvern.analysis.gate import (
    Baseline,
    Thresholds,
    baseline_from_row,
    evaluate,
    read_baseline,
    write_baseline,
)
from kvern.infra.config import GateConfig
from kvern.infra.errors import InputError, UsageError


def _row(thr: float = 0.5, rhr: float = 0.8, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "policy": "lru", "profile": "vllm", "capacity": "10000", "capacity_blocks": 10000, "block_size": 16,
        "token_hit_rate": thr, "request_hit_rate": rhr, "mean_request_hit_ratio": thr,
        "flops_saved_ratio": thr * 1.1,
    }
    row.update(kw)
    return row


def test_drop_within_and_beyond_max_drop() -> None:
    base = baseline_from_row(_row(0.50))
    ok = evaluate(_row(0.49), base, Thresholds(max_drop=0.02))
    assert ok.passed and ok.baseline == 0.50 and ok.current == 0.49
    assert ok.change == pytest.approx(-0.01)
    bad = evaluate(_row(0.47), base, Thresholds(max_drop=0.02))
    assert not bad.passed
    [check] = bad.failed_checks
    assert check.name == "drop" and check.value == pytest.approx(0.03) and check.limit == 0.02


def test_exact_max_drop_passes_despite_float_noise() -> None:
    # 0.3 - 0.1 is 0.19999999999999998 in binary floats: a drop of exactly max_drop passes.
    assert evaluate(_row(0.1), baseline_from_row(_row(0.3)), Thresholds(max_drop=0.2)).passed


def test_failure_message() -> None:
    v = evaluate(_row(0.41), baseline_from_row(_row(0.642)), Thresholds(min_value=0.5, max_drop=0.02))
    assert v.message() == ("gate failed: token hit rate 41.00% is below the floor 50.00%; token hit rate "
                           "41.00% fell 23.20 pt below the baseline 64.20% (allowed: 2.00 pt)")
    assert evaluate(_row(0.7), None, Thresholds(min_value=0.5)).message() == "gate passed"


def test_thresholds_from_config_and_flags() -> None:
    gate = GateConfig(min_hit_rate=0.3, max_drop=0.05)
    assert Thresholds.from_config(gate) == Thresholds("token_hit_rate", 0.3, 0.05)
    assert Thresholds.from_config(gate, "savings", 0.0, 0.0) == Thresholds("savings", 0.0, 0.0)


def test_improvement_passes() -> None:
    v = evaluate(_row(0.9), baseline_from_row(_row(0.5)), Thresholds(max_drop=0.0))
    assert v.passed and v.change == pytest.approx(0.4)


def test_floor_only_without_baseline() -> None:
    assert evaluate(_row(0.6), None, Thresholds(min_value=0.6)).passed
    v = evaluate(_row(0.59), None, Thresholds(min_value=0.6))
    assert not v.passed and v.baseline is None and v.change is None
    assert [c.name for c in v.checks] == ["floor"]


def test_floor_and_drop_both_reported() -> None:
    v = evaluate(_row(0.2), baseline_from_row(_row(0.5)), Thresholds(min_value=0.4, max_drop=0.1))
    assert [c.name for c in v.failed_checks] == ["floor", "drop"]


def test_metric_selects_column() -> None:
    base = baseline_from_row(_row(0.5, rhr=0.9))
    v = evaluate(_row(0.5, rhr=0.6), base, Thresholds(metric="request_hit_rate", max_drop=0.1))
    assert not v.passed and v.current == 0.6 and v.baseline == 0.9
    s = evaluate(_row(0.5), base, Thresholds(metric="savings"))
    assert s.current == pytest.approx(0.55) and s.passed


def test_savings_without_geometry_is_usage_error() -> None:
    with pytest.raises(UsageError, match="geometry"):
        evaluate(_row(flops_saved_ratio=None), None, Thresholds(metric="savings", min_value=0.1))
    with pytest.raises(UsageError, match="geometry"):
        evaluate(_row(flops_saved_ratio=float("nan")), None, Thresholds(metric="savings", min_value=0.1))


def test_bad_thresholds_and_nothing_to_gate() -> None:
    with pytest.raises(UsageError, match="--metric"):
        Thresholds(metric="speed")
    with pytest.raises(UsageError, match="--min-hit-rate"):
        Thresholds(min_value=1.5)
    with pytest.raises(UsageError, match="--max-drop"):
        Thresholds(max_drop=-0.1)
    with pytest.raises(UsageError, match="nothing to gate"):
        evaluate(_row(), None, Thresholds())


def test_baseline_under_other_settings_is_usage_error() -> None:
    base = baseline_from_row(_row(capacity_blocks=1000))
    with pytest.raises(UsageError, match="capacity_blocks 1000 \\(baseline\\) vs 10000"):
        evaluate(_row(), base, Thresholds())


def test_baseline_with_other_policy_parameters_is_usage_error() -> None:
    base = baseline_from_row(_row(policy="lfu", policy_label="lfu(half_life=10)"))
    with pytest.raises(UsageError, match="policy parameters lfu\\(half_life=10\\)"):
        evaluate(_row(policy="lfu", policy_label="lfu"), base, Thresholds())
    assert evaluate(_row(policy="lfu", policy_label="lfu(half_life=10)"), base, Thresholds()).passed


def test_baseline_roundtrip_is_deterministic(tmp_path: Path) -> None:
    row = _row(np.float64(0.25), capacity_blocks=np.int64(10000), evicted_blocks=np.int64(7),
               gap=float("nan"))
    base = baseline_from_row(row, trace="t.jsonl")
    write_baseline(base, tmp_path / "a.json")
    again = read_baseline(tmp_path / "a.json")
    assert again == base and again.row["gap"] is None and again.row["evicted_blocks"] == 7
    write_baseline(again, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]  # no temp file left


def test_bad_baseline_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--update-baseline"):
        read_baseline(tmp_path / "missing.json")
    p = tmp_path / "b.json"
    p.write_text("{not json")
    with pytest.raises(InputError, match="not a JSON baseline"):
        read_baseline(p)
    p.write_text(json.dumps({"kvern_baseline": 99}))
    with pytest.raises(InputError, match="not a kvern baseline"):
        read_baseline(p)
    p.write_text(json.dumps({"kvern_baseline": 1, "policy": "lru"}))
    with pytest.raises(InputError, match="lacks"):
        read_baseline(p)


milli = st.integers(0, 1000)


@given(base=milli, now=milli, floor=st.none() | milli, max_drop=st.none() | milli)
def test_verdict_matches_reference(base: int, now: int, floor: int | None, max_drop: int | None) -> None:
    """Against the plain rule in exact integer thousandths (float noise must not flip a verdict)."""
    v = evaluate(_row(now / 1000), Baseline("lru", "vllm", 10000, 16, _row(base / 1000)),
                 Thresholds(min_value=None if floor is None else floor / 1000,
                            max_drop=None if max_drop is None else max_drop / 1000))
    expect = (floor is None or now >= floor) and (max_drop is None or base - now <= max_drop)
    assert v.passed == expect
    assert v.to_dict()["passed"] == expect
