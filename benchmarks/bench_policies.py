"""Blocks/s of every policy × profile on the Mooncake conversation trace (BENCHMARKS.md).

    .venv/bin/python -m benchmarks.bench_policies [--trace PATH] [--capacity 10000] [--repeat 3]

The compiled loops are warmed up first (one run each at a tiny capacity); each timing is the best of
``--repeat`` runs of ``kvern.sim.simulate.simulate`` (engine only: the trace is ingested and
interned before the clock starts). Blocks/s = block accesses of the stream / seconds.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from kvern.infra.config import Config
from kvern.ingest.pipeline import load_trace
from kvern.ingest.stream import block_streams
from kvern.sim.policies import POLICIES
from kvern.sim.profiles import PROFILES
from kvern.sim.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
COMBOS = [(p, pol) for p in ("ideal", "vllm") for pol in POLICIES] + [
    ("sglang", "lru")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", type=Path, default=ROOT / "traces" / "mooncake_conversation.jsonl")
    ap.add_argument("--capacity", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    stream = next(iter(block_streams(load_trace(args.trace, Config())).values()))
    n = len(stream.block_ids)
    print(f"{args.trace.name}: {stream.num_requests} requests, {n} block accesses, "
          f"{stream.num_unique} unique blocks; {platform.processor() or platform.machine()}")
    for profile, policy in COMBOS:  # JIT warm-up (compiled once, cached on disk)
        assert profile in PROFILES
        simulate(stream, policy, 10, profile)
    print("| profile | policy | " + " | ".join(f"C={c:,}" for c in args.capacity) + " |")
    print("|---|---|" + "---:|" * len(args.capacity))
    for profile, policy in COMBOS:
        cells = []
        for cap in args.capacity:
            best = min(_timed(stream, policy, cap, profile) for _ in range(args.repeat))
            cells.append(f"{n / best / 1e6:.2f} M/s")
        print(f"| {profile} | {policy} | " + " | ".join(cells) + " |")


def _timed(stream, policy: str, cap: int, profile: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    simulate(stream, policy, cap, profile)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
