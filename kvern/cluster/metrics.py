"""The tables of a cluster run (docs/cluster.md#outputs): one row per request × setting
(``cluster.parquet``) and one per setting (``summary.parquet``/``summary.json``).

Hit rates per tier are shares of all prompt tokens; ``hit_rate_lost`` is the token hit rate
of one cache of the fleet's summed GPU capacity (same profile and policy, no offload) minus
the fleet's GPU hit rate. Imbalance is over the replicas' prefill tokens (uncached prompt
tokens): max/mean and stddev/mean. With several models each model has its own fleet: the
whole-trace row weighs each fleet's imbalance by its prefill tokens, and its replicas' lowest
and highest hit rates by its prompt tokens (replicas of different models are never compared).
TTFT columns come from the time model: estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from kvern.cluster.fleet import SettingRun
from kvern.ingest.stream import BlockStream

ALL_MODELS = "*"

SUMMARY_SCHEMA = pa.schema([
    ("model", pa.string()), ("profile", pa.string()), ("policy", pa.string()), ("router", pa.string()),
    ("router_label", pa.string()), ("replicas", pa.int64()), ("capacity", pa.string()),
    ("capacity_blocks", pa.int64()), ("offload", pa.string()), ("requests", pa.int64()),
    ("prompt_tokens", pa.int64()), ("cached_tokens", pa.int64()), ("gpu_tokens", pa.int64()),
    ("cpu_tokens", pa.int64()), ("disk_tokens", pa.int64()), ("token_hit_rate", pa.float64()),
    ("gpu_token_hit_rate", pa.float64()), ("cpu_token_hit_rate", pa.float64()),
    ("disk_token_hit_rate", pa.float64()), ("request_hit_rate", pa.float64()),
    ("gpu_request_hit_rate", pa.float64()), ("tier_request_hit_rate", pa.float64()),
    ("global_token_hit_rate", pa.float64()), ("hit_rate_lost", pa.float64()),
    ("prefill_imbalance_max_mean", pa.float64()), ("prefill_imbalance_cv", pa.float64()),
    ("replica_hit_rate_min", pa.float64()), ("replica_hit_rate_max", pa.float64()),
    ("ttft_p50_s", pa.float64()), ("ttft_p99_s", pa.float64()), ("ttft_mean_s", pa.float64()),
    ("transfer_s", pa.float64()), ("costly_tier_hits", pa.int64()), ("false_hits", pa.int64()),
    ("false_misses", pa.int64()), ("regret_tokens", pa.int64()), ("split_tokens", pa.int64()),
    ("unschedulable_requests", pa.int64()), ("evicted_blocks", pa.int64()),
])

REQUESTS_SCHEMA = pa.schema([
    ("model", pa.string()), ("request_id", pa.string()), ("row", pa.int64()), ("arrival_s", pa.float64()),
    ("router", pa.string()), ("replicas", pa.int64()), ("capacity", pa.string()), ("offload", pa.string()),
    ("replica", pa.int32()), ("prompt_tokens", pa.int64()), ("cached_tokens", pa.int64()),
    ("gpu_tokens", pa.int64()), ("cpu_tokens", pa.int64()), ("disk_tokens", pa.int64()),
    ("hit_tier", pa.string()), ("transfer_s", pa.float64()), ("prefill_s", pa.float64()),
    ("wait_s", pa.float64()), ("ttft_s", pa.float64()), ("router_estimate_blocks", pa.int64()),
    ("cached_blocks_at_arrival", pa.int64()), ("regret_tokens", pa.int64()),
])


@dataclass
class Setting:
    """One finished setting of one model."""

    model: str
    profile: str
    policy: str
    router: str
    router_label: str
    replicas: int
    capacity: str
    offload: str
    run: SettingRun
    stream: BlockStream
    global_cached: int
    """Tokens one cache of ``replicas`` × the capacity serves (same profile and policy)."""


def summary_row(group: Sequence[Setting]) -> dict[str, Any]:
    """One setting's row; ``group`` holds it for each model (several: the whole-trace row)."""
    first = group[0]
    prompt = np.concatenate([s.stream.prompt_tokens.astype(np.int64) for s in group])
    gpu = np.concatenate([s.run.gpu_tokens for s in group])
    cpu = np.concatenate([s.run.cpu_tokens for s in group])
    disk = np.concatenate([s.run.disk_tokens for s in group])
    cached = gpu + cpu + disk
    ttft = np.concatenate([s.run.ttft_s for s in group])
    total = int(prompt.sum())
    n = len(prompt)

    def rate(x: np.ndarray) -> float:
        return float(x.sum()) / total if total else 0.0

    # per replica, within each model's fleet (the fleets are separate: their replicas are not
    # compared with each other); the whole-trace row weighs each fleet's imbalance by its
    # prefill tokens, and its lowest and highest replica hit rates by its prompt tokens (so the
    # spread holds the whole-trace hit rate, as each fleet's holds its own)
    imbalance: list[tuple[float, float, float]] = []
    spreads: list[tuple[float, float, float]] = []
    for s in group:
        work, hit = [], []
        for i in range(s.replicas):
            mine = s.run.replica == i
            p = s.stream.prompt_tokens[mine].astype(np.int64)
            c = s.run.cached_tokens[mine]
            work.append(float((p - c).sum()))
            if p.sum():
                hit.append(float(c.sum()) / float(p.sum()))
        w = np.array(work)
        mean = w.mean() if len(w) else 0.0
        if mean > 0:
            imbalance.append((float(w.max() / mean), float(w.std() / mean), float(w.sum())))
        else:
            imbalance.append((1.0, 0.0, 0.0))
        if hit:
            spreads.append((min(hit), max(hit), float(s.stream.prompt_tokens.sum())))
    if len(imbalance) == 1:
        imb_max_mean, imb_cv = imbalance[0][0], imbalance[0][1]
    else:
        weights = [x[2] for x in imbalance]
        imb_max_mean = _weighted([x[0] for x in imbalance], weights)
        imb_cv = _weighted([x[1] for x in imbalance], weights)
    if len(spreads) == 1:
        spread = spreads[0][:2]
    elif spreads:
        tokens = [x[2] for x in spreads]
        spread = (_weighted([x[0] for x in spreads], tokens), _weighted([x[1] for x in spreads], tokens))
    else:
        spread = (0.0, 0.0)
    est = np.concatenate([s.run.estimate_blocks for s in group])
    exact = np.concatenate([s.run.exact_blocks for s in group])
    measured = est >= 0
    regret = np.concatenate([s.run.regret_tokens for s in group])
    split = np.concatenate([s.run.split_tokens for s in group])
    tier_tok = cpu + disk
    recompute = np.concatenate([s.run.recompute_s for s in group])
    transfer = np.concatenate([s.run.transfer_s for s in group])
    global_rate = sum(s.global_cached for s in group) / total if total else 0.0
    return {
        "model": first.model if len(group) == 1 else ALL_MODELS, "profile": first.profile,
        "policy": first.policy, "router": first.router, "router_label": first.router_label,
        "replicas": first.replicas, "capacity": first.capacity, "capacity_blocks": first.run.replica_capacity,
        "offload": first.offload, "requests": n, "prompt_tokens": total, "cached_tokens": int(cached.sum()),
        "gpu_tokens": int(gpu.sum()), "cpu_tokens": int(cpu.sum()), "disk_tokens": int(disk.sum()),
        "token_hit_rate": rate(cached), "gpu_token_hit_rate": rate(gpu), "cpu_token_hit_rate": rate(cpu),
        "disk_token_hit_rate": rate(disk),
        "request_hit_rate": float((cached > 0).mean()) if n else 0.0,
        "gpu_request_hit_rate": float((gpu > 0).mean()) if n else 0.0,
        "tier_request_hit_rate": float((tier_tok > 0).mean()) if n else 0.0,
        "global_token_hit_rate": global_rate, "hit_rate_lost": global_rate - rate(gpu),
        "prefill_imbalance_max_mean": imb_max_mean, "prefill_imbalance_cv": imb_cv,
        "replica_hit_rate_min": spread[0], "replica_hit_rate_max": spread[1],
        "ttft_p50_s": float(np.percentile(ttft, 50)) if n else 0.0,
        "ttft_p99_s": float(np.percentile(ttft, 99)) if n else 0.0,
        "ttft_mean_s": float(ttft.mean()) if n else 0.0,
        "transfer_s": float(transfer.sum()),
        "costly_tier_hits": int(((tier_tok > 0) & (transfer > recompute)).sum()),
        "false_hits": int((est[measured] > exact[measured]).sum()) if measured.any() else None,
        "false_misses": int((est[measured] < exact[measured]).sum()) if measured.any() else None,
        "regret_tokens": int(regret[regret >= 0].sum()) if (regret >= 0).any() else None,
        "split_tokens": int(split[split >= 0].sum()) if (split >= 0).any() else None,
        "unschedulable_requests": int(sum(int(s.run.unschedulable.sum()) for s in group)),
        "evicted_blocks": int(sum(s.run.evicted_blocks for s in group)),
    }


def _weighted(values: list[float], weights: list[float]) -> float:
    total = sum(weights)
    if total <= 0:
        return sum(values) / len(values)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / total


def requests_part(s: Setting, request_ids: np.ndarray) -> pa.Table:
    run, st = s.run, s.stream
    n = st.num_requests
    tier = np.where(run.disk_tokens > 0, "disk", np.where(run.cpu_tokens > 0, "cpu",
                    np.where(run.gpu_tokens > 0, "gpu", "none")))

    def nullable(a: np.ndarray) -> pa.Array:
        return pa.array(a, pa.int64(), mask=a < 0)

    return pa.table({
        "model": pa.array([s.model] * n, pa.string()),
        "request_id": pa.array(request_ids[st.rows], pa.string()),
        "row": pa.array(st.rows, pa.int64()), "arrival_s": pa.array(st.arrival_s, pa.float64()),
        "router": pa.array([s.router_label] * n, pa.string()),
        "replicas": pa.array(np.full(n, s.replicas, np.int64)),
        "capacity": pa.array([s.capacity] * n, pa.string()),
        "offload": pa.array([s.offload] * n, pa.string()),
        "replica": pa.array(run.replica.astype(np.int32)),
        "prompt_tokens": pa.array(st.prompt_tokens.astype(np.int64)),
        "cached_tokens": pa.array(run.cached_tokens), "gpu_tokens": pa.array(run.gpu_tokens),
        "cpu_tokens": pa.array(run.cpu_tokens), "disk_tokens": pa.array(run.disk_tokens),
        "hit_tier": pa.array(tier, pa.string()), "transfer_s": pa.array(run.transfer_s),
        "prefill_s": pa.array(run.prefill_s), "wait_s": pa.array(run.wait_s), "ttft_s": pa.array(run.ttft_s),
        "router_estimate_blocks": nullable(run.estimate_blocks),
        "cached_blocks_at_arrival": nullable(run.exact_blocks), "regret_tokens": nullable(run.regret_tokens),
    }, schema=REQUESTS_SCHEMA)
