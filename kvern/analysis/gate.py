"""The CI regression gate: a pure verdict from summary rows and thresholds, plus the baseline file.

A gate compares one number of one simulation (``metric`` of the summary row for ``policy`` ×
``capacity_blocks`` × ``profile``) with a floor and with the same number in a baseline taken
from an earlier, good trace. It fails when the number is below the floor or fell by more than
``max_drop`` absolute points (0.02 = 2 points). A baseline taken under other settings (policy,
profile, capacity, block size) would compare unlike with unlike, so it is a usage error, not a
verdict. Exit codes: 0 pass, 1 regression (``GateFailed``), 2 bad usage or input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kvern.infra.config import GateConfig
from kvern.infra.errors import InputError, UsageError
from kvern.infra.files import write_json
from kvern.infra.jsondata import JsonProblem, parse_json

METRICS: dict[str, str] = {
    "token_hit_rate": "token_hit_rate",
    "request_hit_rate": "request_hit_rate",
    "savings": "flops_saved_ratio",
}
"""Gate metric name -> summary column. ``savings`` is the share of prefill FLOPs saved."""

BASELINE_VERSION = 1
EPS = 1e-9
"""Slack on comparisons so that a rerun of the same trace never fails on float noise."""

_SETTINGS = ("policy", "profile", "capacity_blocks", "block_size")
"""Settings a baseline must share with the row it is compared with (a summary row has them all)."""


@dataclass(frozen=True)
class Thresholds:
    metric: str = "token_hit_rate"
    min_value: float | None = None
    """Absolute floor (0-1), or None for no floor."""
    max_drop: float | None = 0.02
    """Largest allowed fall against the baseline, absolute (0-1); None for no drop check."""

    @classmethod
    def from_config(cls, gate: GateConfig, metric: str | None = None, min_value: float | None = None,
                    max_drop: float | None = None) -> Thresholds:
        """``gate:`` of config.yaml, each value overridden by its flag where given."""
        return cls(metric or gate.metric, gate.min_hit_rate if min_value is None else min_value,
                   gate.max_drop if max_drop is None else max_drop)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"--metric: unknown metric {self.metric!r}; one of {', '.join(METRICS)}")
        if self.min_value is not None and not 0 <= self.min_value <= 1:
            raise UsageError(f"--min-hit-rate: {self.min_value} is not between 0 and 1")
        if self.max_drop is not None and not 0 <= self.max_drop <= 1:
            raise UsageError(f"--max-drop: {self.max_drop} is not between 0 and 1 (absolute points)")


@dataclass(frozen=True)
class Check:
    """One condition of the gate: ``value`` against ``limit``."""

    name: str
    """"floor" (value >= limit) or "drop" (baseline - value <= limit)."""
    value: float
    limit: float
    passed: bool


@dataclass(frozen=True)
class Verdict:
    metric: str
    policy: str
    profile: str
    capacity_blocks: int
    current: float
    baseline: float | None
    """The metric in the baseline, or None when gating on the floor only."""
    checks: tuple[Check, ...]

    @property
    def change(self) -> float | None:
        return None if self.baseline is None else self.current - self.baseline

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def message(self) -> str:
        """One line per failed check, for the exit-1 message."""
        name = self.metric.replace("_", " ")
        lines = []
        for c in self.failed_checks:
            if c.name == "floor":
                lines.append(f"{name} {self.current:.2%} is below the floor {c.limit:.2%}")
            else:
                lines.append(f"{name} {self.current:.2%} fell {c.value * 100:.2f} pt below the baseline "
                             f"{self.baseline:.2%} (allowed: {c.limit * 100:.2f} pt)")
        return "gate failed: " + "; ".join(lines) if lines else "gate passed"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = [asdict(c) for c in self.checks]
        d["change"] = self.change
        d["passed"] = self.passed
        return d


@dataclass(frozen=True)
class Baseline:
    """What the gate compares against: the settings and the summary row of a good run."""

    policy: str
    profile: str
    capacity_blocks: int
    block_size: int
    row: dict[str, Any]
    """The summary row (every metric, so that ``--metric`` can change without a new baseline)."""
    trace: str = ""
    """File name of the trace the baseline was taken from (no folder)."""

    path: str | None = field(default=None, compare=False, repr=False)
    """Where it was read from (for messages; never written into the file)."""

    def value(self, metric: str) -> float:
        column = METRICS[metric]
        if self.row.get(column) is None:
            where = f"{self.path}: " if self.path else ""
            raise InputError(f"{where}the baseline has no {column} for --metric {metric}; record a new "
                             "baseline with --update-baseline, or gate on a metric it has")
        return metric_value(self.row, metric)


# -- verdict --------------------------------------------------------------------------------


def metric_value(row: Mapping[str, Any], metric: str) -> float:
    """The gated number of a summary row; a usage error where the row cannot give it."""
    column = METRICS[metric]
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        why = " (savings need the model's KV geometry in config.yaml)" if metric == "savings" else ""
        raise UsageError(f"--metric {metric}: the summary has no {column}{why}")
    return float(value)


def evaluate(row: Mapping[str, Any], baseline: Baseline | None, thresholds: Thresholds) -> Verdict:
    """The verdict on one summary row: the floor check and, with a baseline, the drop check.

    Pure: no files, no printing. A baseline taken under other settings raises ``UsageError``.
    """
    if baseline is None and thresholds.min_value is None:
        raise UsageError("nothing to gate on: give --baseline FILE or --min-hit-rate")
    if baseline is not None:
        _check_comparable(row, baseline)
    current = metric_value(row, thresholds.metric)
    checks: list[Check] = []
    if thresholds.min_value is not None:
        checks.append(Check("floor", current, thresholds.min_value, current >= thresholds.min_value - EPS))
    base_value = None
    if baseline is not None:
        base_value = baseline.value(thresholds.metric)
        if thresholds.max_drop is not None:
            drop = base_value - current
            checks.append(Check("drop", drop, thresholds.max_drop, drop <= thresholds.max_drop + EPS))
    return Verdict(
        metric=thresholds.metric,
        policy=str(row["policy"]),
        profile=str(row["profile"]),
        capacity_blocks=int(row["capacity_blocks"]),
        current=current,
        baseline=base_value,
        checks=tuple(checks),
    )


def _check_comparable(row: Mapping[str, Any], baseline: Baseline) -> None:
    mismatched = [
        f"{k} {getattr(baseline, k)} (baseline) vs {row.get(k)} (now)"
        for k in _SETTINGS
        if str(getattr(baseline, k)) != str(row.get(k))
    ]
    before, now = baseline.row.get("policy_label"), row.get("policy_label")
    if before is not None and now is not None and before != now:
        mismatched.append(f"policy parameters {before} (baseline) vs {now} (now)")
    if mismatched:
        raise UsageError(
            "the baseline was taken under other settings: " + "; ".join(mismatched)
            + ". Gate with the baseline's settings, or record a new one with --update-baseline"
        )


# -- baseline file --------------------------------------------------------------------------


def baseline_from_row(row: Mapping[str, Any], trace: str = "") -> Baseline:
    clean = {k: _jsonable(v) for k, v in sorted(row.items())}
    return Baseline(
        policy=str(row["policy"]),
        profile=str(row["profile"]),
        capacity_blocks=int(row["capacity_blocks"]),
        block_size=int(row["block_size"]),
        row=clean,
        trace=trace,
    )


def write_baseline(baseline: Baseline, path: str | Path) -> None:
    """Atomic, deterministic JSON (sorted keys), so a re-recorded baseline diffs cleanly."""
    fields = asdict(baseline)
    fields.pop("path")
    write_json({"kvern_baseline": BASELINE_VERSION, **fields}, path)


def read_baseline(path: str | Path) -> Baseline:
    """Read and check a baseline file: anything the gate could misread (a metric that is not a
    number in [0, 1], a missing setting) is an ``InputError`` naming the file (exit 2), never a
    failed gate (exit 1)."""
    try:
        raw = parse_json(Path(path).read_bytes())
    except FileNotFoundError:
        raise InputError("no baseline file; record one with --update-baseline", path) from None
    except IsADirectoryError:
        raise InputError("a folder, not a baseline file", path) from None
    except OSError as e:
        raise InputError(f"cannot read the baseline: {e.strerror or e}", path) from None
    except JsonProblem as e:
        raise InputError(f"not a JSON baseline ({e})", path) from None
    if not isinstance(raw, dict) or raw.get("kvern_baseline") != BASELINE_VERSION:
        raise InputError(f"not a kvern baseline (version {BASELINE_VERSION} expected)", path)
    row = raw.get("row")
    if not isinstance(row, dict):
        raise InputError("baseline lacks its summary row ('row' must be a JSON object)", path)
    for metric, column in METRICS.items():
        value = row.get(column)
        if value is None:
            continue  # absent: an error only if the gate asks for this metric (Baseline.value)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InputError(f"corrupt baseline: row.{column} (the {metric} metric) must be a number "
                             f"from 0 to 1, got {json.dumps(value)[:40]}", path)
    try:
        return Baseline(
            policy=_text(raw, "policy"),
            profile=_text(raw, "profile"),
            capacity_blocks=_count(raw, "capacity_blocks"),
            block_size=_count(raw, "block_size", minimum=0),
            row=dict(row),
            trace=str(raw.get("trace", "")),
            path=str(path),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"baseline lacks or garbles a field ({e})", path) from None


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {json.dumps(value)[:40]}")
    return value


def _count(raw: Mapping[str, Any], key: str, minimum: int = 1) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key!r} must be a whole number ≥ {minimum}, got {json.dumps(value)[:40]}")
    return value


def _jsonable(v: Any) -> Any:
    """numpy scalars -> Python numbers; NaN -> None (JSON has no NaN)."""
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v
