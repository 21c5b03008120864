"""Blocks/s of every policy × profile on the Mooncake conversation trace (BENCHMARKS.md).

    .venv/bin/python -m benchmarks.bench_policies [--trace PATH] [--capacity 10000] [--repeat 3]
        [--policies lru,followup]

The compiled loops are warmed up first (one run each at a tiny capacity); each timing is the best of
``--repeat`` runs of ``kvern.sim.simulate.simulate`` (engine only: the trace is ingested and
interned before the clock starts). Blocks/s = block accesses of the stream / seconds, wall clock;
in brackets the same over the process's CPU time, which other jobs on a shared machine disturb
less (they still share its caches).
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
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma-separated (default: all)")
    args = ap.parse_args()
    wanted = set(args.policies.split(","))
    combos = [(p, pol) for p, pol in COMBOS if pol in wanted]
    stream = next(iter(block_streams(load_trace(args.trace, Config())).values()))
    n = len(stream.block_ids)
    print(f"{args.trace.name}: {stream.num_requests} requests, {n} block accesses, "
          f"{stream.num_unique} unique blocks; {platform.processor() or platform.machine()}")
    for profile, policy in combos:  # JIT warm-up (compiled once, cached on disk)
        assert profile in PROFILES
        simulate(stream, policy, 10, profile)
    print("| profile | policy | " + " | ".join(f"C={c:,}" for c in args.capacity) + " |")
    print("|---|---|" + "---:|" * len(args.capacity))
    for profile, policy in combos:
        cells = []
        for cap in args.capacity:
            times = [_timed(stream, policy, cap, profile) for _ in range(args.repeat)]
            wall = min(t[0] for t in times)
            cpu = min(t[1] for t in times)
            cells.append(f"{n / wall / 1e6:.2f} M/s ({n / cpu / 1e6:.2f})")
        print(f"| {profile} | {policy} | " + " | ".join(cells) + " |")


def _timed(stream, policy: str, cap: int, profile: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(wall, CPU) seconds of one simulation."""
    t0, c0 = time.perf_counter(), time.process_time()
    simulate(stream, policy, cap, profile)
    return time.perf_counter() - t0, time.process_time() - c0


if __name__ == "__main__":
    main()
