"""What a trace is made of, and the most any prefix cache could serve from it.

``infinite_cache_hits`` is the upper bound every cache is measured against: the simulator's
``ideal`` profile at infinite capacity must give exactly these numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numba
import numpy as np

from kvern.infra.compiled import use_kvern_cache
from kvern.ingest.stream import BlockStream, block_streams
from kvern.ingest.trace import Trace

use_kvern_cache()


def infinite_cache_hits(trace: Trace) -> np.ndarray:
    """Cached tokens of each request (int64, in table row order) under an infinite cache.

    A request's cached prefix is the longest run of its leading blocks whose keys an earlier
    request of the same model already had; it covers ``min(prompt_tokens, run × block_size)``
    tokens, so a partial tail block counts with its own tokens when its key was seen. No
    last-token rule: this is the ``ideal`` profile's bound.
    """
    hits = np.zeros(trace.num_requests, dtype=np.int64)
    for stream in block_streams(trace, tokens=False).values():
        hits[stream.rows] = _stream_hits(stream)
    return hits


def _stream_hits(s: BlockStream) -> np.ndarray:
    run = _leading_runs(s.block_ids, s.req_offsets, s.num_unique)
    return np.minimum(s.prompt_tokens.astype(np.int64), run * s.block_size)


@numba.njit(cache=True, nogil=True)
def _leading_runs(ids: np.ndarray, offsets: np.ndarray, unique: int) -> np.ndarray:
    """Per request, its leading blocks that an earlier request already had (one pass, a flag per
    unique block: the memory of the stream's ids, not of several copies)."""
    seen = np.zeros(unique, dtype=np.bool_)
    run = np.empty(len(offsets) - 1, dtype=np.int64)
    for r in range(len(offsets) - 1):
        lo, hi = offsets[r], offsets[r + 1]
        k = lo
        while k < hi and seen[ids[k]]:
            k += 1
        run[r] = k - lo
        for j in range(lo, hi):  # after the lookup: a request's own blocks count from the next one on
            seen[ids[j]] = True
    return run


@dataclass(frozen=True)
class ModelSummary:
    model: str
    requests: int
    sessions: int
    prompt_tokens: int
    mean_prompt_tokens: float
    p50_prompt_tokens: float
    p99_prompt_tokens: float
    blocks: int
    unique_blocks: int
    infinite_cache_tokens: int
    infinite_cache_hit_rate: float
    """Σ infinite-cache hits / Σ prompt tokens: the upper bound of the token hit rate."""


@dataclass(frozen=True)
class TraceSummary:
    source: str
    format: str
    block_size: int
    tokenizers: dict[str, str]
    skipped_lines: int
    models: list[ModelSummary]
    total: ModelSummary

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(trace: Trace) -> TraceSummary:
    hits = infinite_cache_hits(trace)
    models = trace.column("model").to_numpy(zero_copy_only=False)
    sessions = trace.column("session_id").to_numpy(zero_copy_only=False)
    prompt = trace.column("prompt_tokens").to_numpy().astype(np.int64)
    streams = block_streams(trace, tokens=False)
    nblocks = np.zeros(trace.num_requests, dtype=np.int64)
    for s in streams.values():
        nblocks[s.rows] = np.diff(s.req_offsets)

    def one(name: str, mask: np.ndarray, unique: int) -> ModelSummary:
        p = prompt[mask]
        sess = {s for s in sessions[mask] if s is not None}
        total = int(p.sum())
        cached = int(hits[mask].sum())
        return ModelSummary(
            model=name, requests=int(mask.sum()), sessions=len(sess), prompt_tokens=total,
            mean_prompt_tokens=float(p.mean()) if p.size else 0.0,
            p50_prompt_tokens=_pct(p, 50), p99_prompt_tokens=_pct(p, 99),
            blocks=int(nblocks[mask].sum()), unique_blocks=unique,
            infinite_cache_tokens=cached, infinite_cache_hit_rate=cached / total if total else 0.0,
        )

    per_model = [one(m, models == m, streams[m].num_unique) for m in trace.models()]
    everything = one("all", np.ones(len(prompt), dtype=bool), sum(s.num_unique for s in streams.values()))
    meta = trace.meta
    return TraceSummary(source=meta.source, format=meta.format, block_size=meta.block_size,
                        tokenizers=dict(meta.tokenizers), skipped_lines=meta.skipped_lines,
                        models=per_model, total=everything)


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q, method="inverted_cdf")) if values.size else 0.0
