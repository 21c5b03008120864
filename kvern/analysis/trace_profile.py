"""The trace's profile: who sends what, how long the prompts are, and how soon blocks come back.

Per-model counts and the infinite-cache bound come from ``kvern.sim.bounds`` (the numbers
``kvern ingest`` prints). On top of them: requests per session, the prompt length
distribution, and the *reuse distance* of blocks: for each block found again, the number of
distinct blocks used since its last use. That is the LRU capacity at which the reuse hits
(its stack distance), taken from the one-pass LRU curve of ``kvern.sim.curve`` under the
ideal block model, so the histogram reads directly as "cache needed".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from kvern.ingest.stream import block_streams
from kvern.ingest.trace import Trace
from kvern.sim.bounds import TraceSummary, infinite_cache_hits, summarize
from kvern.sim.curve import lru_curve


@dataclass(frozen=True)
class Distribution:
    """Summary of a sample (weighted where ``weights`` are given); percentiles are values seen."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray, weights: np.ndarray | None = None) -> Distribution:
        values = np.asarray(values, dtype=np.float64)
        w = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
        keep = w > 0
        values, w = values[keep], w[keep]
        total = float(w.sum())
        if total == 0:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        order = np.argsort(values, kind="stable")
        values, cum = values[order], np.cumsum(w[order])

        def pct(q: float) -> float:  # inverted CDF: the smallest value with CDF >= q
            return float(values[min(int(np.searchsorted(cum, q / 100 * total - 1e-9)), len(values) - 1)])

        return cls(round(total), float((values * w[order]).sum() / total), pct(50), pct(90), pct(99),
                   float(values[-1]))


@dataclass(frozen=True)
class Histogram:
    """Counts in power-of-two bins: bin i holds values in ``[edges[i], edges[i+1])``."""

    edges: list[int]
    counts: list[int]

    @classmethod
    def log2(cls, values: np.ndarray, weights: np.ndarray | None = None) -> Histogram:
        values = np.asarray(values, dtype=np.int64)
        top = int(values.max()) if len(values) else 1
        edges = [0, 1] + [2**k for k in range(1, max(1, top).bit_length() + 1)]
        counts, _ = np.histogram(values, bins=edges, weights=weights)
        return cls(edges, [int(c) for c in counts])


@dataclass(frozen=True)
class TraceProfile:
    summary: TraceSummary
    """Per model: requests, sessions, prompt tokens, blocks, infinite-cache hit rate."""
    sessions: int
    requests_per_session: Distribution
    """Over sessions (requests without a session id are left out; count 0 when none have one)."""
    session_sizes: dict[int, int]
    """Requests in a session -> number of such sessions."""
    prompt_tokens: Distribution
    prompt_hist: Histogram
    reuse_distance: Distribution
    """Over block reuses, in blocks (the LRU capacity each reuse needs to hit)."""
    reuse_hist: Histogram
    infinite_token_hit_rate: float
    infinite_request_hit_rate: float
    """Share of requests with any cached token under an infinite cache."""
    capacity_for_reuses: dict[str, int]
    """Blocks of each model's LRU cache at which 50/90/99% of all block reuses hit."""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def profile(trace: Trace) -> TraceProfile:
    prompt = trace.column("prompt_tokens").to_numpy().astype(np.int64)
    sessions = [s for s in trace.column("session_id").to_pylist() if s is not None]
    _, per_session = np.unique(np.array(sessions, dtype=object), return_counts=True) if sessions else (
        None, np.zeros(0, np.int64))
    hits = infinite_cache_hits(trace)
    dist_counts = _reuse_distance_counts(trace)
    distances = np.arange(len(dist_counts))
    summary = summarize(trace)
    return TraceProfile(
        summary=summary,
        sessions=len(per_session),
        requests_per_session=Distribution.of(per_session),
        session_sizes=dict(zip(*(a.tolist() for a in np.unique(per_session, return_counts=True)),
                               strict=True)),
        prompt_tokens=Distribution.of(prompt),
        prompt_hist=Histogram.log2(prompt),
        reuse_distance=Distribution.of(distances, dist_counts),
        reuse_hist=Histogram.log2(distances, dist_counts),
        infinite_token_hit_rate=summary.total.infinite_cache_hit_rate,
        infinite_request_hit_rate=float((hits > 0).mean()) if len(hits) else 0.0,
        capacity_for_reuses=_capacity_for(dist_counts),
    )


def _reuse_distance_counts(trace: Trace) -> np.ndarray:
    """int64[D+1]: block reuses at each stack distance d (index 0 is always 0), all models."""
    per_model = []
    for stream in block_streams(trace, tokens=False).values():
        curve = lru_curve(stream)
        per_model.append(np.diff(curve.hit_blocks, prepend=0))
    size = max((len(c) for c in per_model), default=1)
    total = np.zeros(size, dtype=np.int64)
    for c in per_model:
        total[: len(c)] += c
    return total


def _capacity_for(counts: np.ndarray) -> dict[str, int]:
    cum = np.cumsum(counts)
    if not len(cum) or cum[-1] == 0:
        return {}
    return {f"{q}%": int(np.searchsorted(cum, q / 100 * cum[-1] - 1e-9)) for q in (50, 90, 99)}
