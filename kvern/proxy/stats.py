"""Latency figures the proxy measures itself: TTFT, end to end, and its own overhead.

They are known on the request path already, so they are kept here in memory (a few list
increments per request) rather than waiting for the analytics worker: log-spaced histograms
(40 buckets per decade, so a percentile is within 3%) per model, for the whole run and per
minute for the recent window, plus Prometheus' cumulative buckets for the overhead.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

_PER_DECADE = 40
_LO = 1e-6
_EDGES = [_LO * 10 ** (i / _PER_DECADE) for i in range(9 * _PER_DECADE + 1)]  # 1 µs .. 1000 s
PROM_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Upper bounds (seconds) of the Prometheus overhead histogram."""
METRICS = ("ttft", "e2e", "overhead")


class Histogram:
    __slots__ = ("counts", "n")

    def __init__(self) -> None:
        self.counts = [0] * (len(_EDGES) + 1)
        self.n = 0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_right(_EDGES, seconds)] += 1
        self.n += 1

    def merge(self, other: Histogram) -> None:
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c
        self.n += other.n

    def quantile(self, q: float) -> float | None:
        """Seconds; the geometric middle of the bucket that holds the q-th value."""
        if self.n == 0:
            return None
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                if i == 0:
                    return _LO
                if i == len(_EDGES):
                    return _EDGES[-1]
                return math.sqrt(_EDGES[i - 1] * _EDGES[i])
        return _EDGES[-1]  # pragma: no cover


def _hists() -> dict[str, Histogram]:
    return {m: Histogram() for m in METRICS}


@dataclass
class ModelCounters:
    requests: int = 0
    errors: int = 0
    prom_counts: list[int] = field(default_factory=lambda: [0] * len(PROM_BUCKETS))
    overhead_sum: float = 0.0
    overhead_n: int = 0


class LatencyStats:
    def __init__(self, window_minutes: int) -> None:
        self.window = window_minutes
        self.run: dict[str, dict[str, Histogram]] = {}
        self.minutes: deque[tuple[int, dict[str, dict[str, Histogram]]]] = deque()
        self.counters: dict[str, ModelCounters] = {}

    def add(self, model: str, now: float, *, ok: bool, ttft_s: float | None, e2e_s: float | None,
            overhead_s: float | None) -> None:
        c = self.counters.get(model)
        if c is None:
            c = self.counters[model] = ModelCounters()
        c.requests += 1
        if not ok:
            c.errors += 1
            return
        minute = int(now // 60)
        if not self.minutes or self.minutes[-1][0] != minute:
            self.minutes.append((minute, {}))
            while self.minutes and self.minutes[0][0] <= minute - self.window:
                self.minutes.popleft()
        recent = self.minutes[-1][1]
        for target in (self.run, recent):
            h = target.get(model)
            if h is None:
                h = target[model] = _hists()
            for name, v in (("ttft", ttft_s), ("e2e", e2e_s), ("overhead", overhead_s)):
                if v is not None:
                    h[name].add(v)
        if overhead_s is not None:
            c.overhead_sum += overhead_s
            c.overhead_n += 1
            i = bisect.bisect_left(PROM_BUCKETS, overhead_s)
            if i < len(PROM_BUCKETS):
                c.prom_counts[i] += 1

    def summary(self, now: float, minutes: int | None = None) -> dict[str, Any]:
        """p50/p99 in ms per model and overall; the whole run, or the last ``minutes``."""
        if minutes is None:
            per_model = self.run
        else:
            first = int(now // 60) - minutes + 1
            per_model = {}
            for minute, models in self.minutes:
                if minute < first:
                    continue
                for model, hs in models.items():
                    acc = per_model.setdefault(model, _hists())
                    for name, h in hs.items():
                        acc[name].merge(h)
        overall = _hists()
        out: dict[str, Any] = {"models": {}}
        for model, hs in per_model.items():
            out["models"][model] = _figures(hs)
            for name, h in hs.items():
                overall[name].merge(h)
        out["overall"] = _figures(overall)
        return out


def _figures(hs: dict[str, Histogram]) -> dict[str, Any]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 3)

    out: dict[str, Any] = {}
    for name in METRICS:
        h = hs[name]
        out[f"{name}_p50_ms"] = ms(h.quantile(0.50))
        out[f"{name}_p99_ms"] = ms(h.quantile(0.99))
    out["measured_requests"] = hs["e2e"].n
    return out
