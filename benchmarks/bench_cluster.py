"""``kvern cluster`` throughput: a generated trace × N replicas × every router (BENCHMARKS.md).

    python -m benchmarks.bench_cluster                  # 100k requests, 8 replicas, 7 routers
    python -m benchmarks.bench_cluster --requests 20000 --replicas 4 --profile ideal

The trace comes from ``benchmarks/gen_trace.py`` (sessions scaled to reach the request count;
``--block-size`` tokens per id), is interned once, then each router runs one fleet setting
(``kvern.cluster.fleet.run_setting``, the unit ``kvern cluster`` runs per setting), timed
after a small warm-up run that compiles the kernels.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.gen_trace import GenParams, generate
from benchmarks.streams import to_stream
from kvern.cluster.fleet import run_setting
from kvern.cluster.routers import ROUTERS
from kvern.cluster.timing import time_model
from kvern.infra.config import Config, KVGeometry, ModelConfig
from kvern.sim.policies import make_policy

ROUTER_NAMES = ["round-robin", "session", "least-loaded", "prefix", "dynamo", "sglang", "llm-d"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--capacity", type=int, default=20_000, help="GPU blocks per replica")
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--profile", default="vllm")
    args = ap.parse_args()
    p = GenParams(sessions=max(10, args.requests // 5), block_size=args.block_size)
    trace = generate(p)
    keep = min(args.requests, trace.num_requests)
    stream = to_stream(trace)
    print(f"trace: {stream.num_requests:,} requests generated, first {keep:,} served; "
          f"{int(stream.req_offsets[keep]):,} block accesses, {stream.num_unique:,} unique blocks "
          f"of {args.block_size} tokens")
    geom = KVGeometry(layers=32, kv_heads=8, head_dim=128, hidden=4096, params=8e9)
    cfg = Config(models={"bench": ModelConfig(geometry=geom)})
    tm = time_model(cfg, "bench")
    stream = _head(stream, keep)
    sessions: list[str | None] = [None] * keep
    outs = trace.output_length[:keep].astype(np.int64)
    pol = make_policy("lru")
    warm = _head(stream, 200)
    for name in ROUTER_NAMES:
        run_setting(warm, args.profile, pol, 2, 100, ROUTERS[name], {}, sessions[:200], 0, tm, outs[:200])
    total = 0.0
    for name in ROUTER_NAMES:
        t0 = time.perf_counter()
        run = run_setting(stream, args.profile, pol, args.replicas, args.capacity, ROUTERS[name], {},
                          sessions, 0, tm, outs)
        dt = time.perf_counter() - t0
        total += dt
        hit = run.cached_tokens.sum() / stream.prompt_tokens.sum()
        print(f"{name:13s} {dt:6.1f} s  {keep / dt:9,.0f} req/s  token hit rate {hit:.1%}")
    print(f"total {total:.1f} s for {len(ROUTER_NAMES)} routers × {args.replicas} replicas × "
          f"{keep:,} requests (profile {args.profile}, {args.capacity:,} blocks per replica)")


def _head(stream, n):  # type: ignore[no-untyped-def]
    """The stream's first ``n`` requests (ids stay global: the engines size by num_unique)."""
    from dataclasses import replace

    return replace(stream, req_offsets=stream.req_offsets[: n + 1], prompt_tokens=stream.prompt_tokens[:n],
                   rows=stream.rows[:n], arrival_s=stream.arrival_s[:n],
                   block_ids=stream.block_ids[: int(stream.req_offsets[n])])


if __name__ == "__main__":
    main()
