"""Why ``lfu``, ``sieve`` and ``slru`` score the same on the Mooncake conversation trace (BENCHMARKS.md).

    .venv/bin/python -m benchmarks.bench_policy_ties [--capacity C ...]

Serves the trace one request at a time under ``ideal`` with each of the three policies and
compares their eviction sequences block for block. For each capacity it also shows what would
make them differ: whether ``lfu`` ever evicts a block used twice or more (else it only ever ranks
single-use leaves, oldest first), how many passes ``sieve``'s hand completes (none: every block it
spared stays for the whole run), and the most blocks ``slru``'s protected segment held after a
request against its share (under it: no demotion, probation is LRU over single-use blocks).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from kvern.infra.config import Config
from kvern.ingest.pipeline import load_trace
from kvern.ingest.stream import BlockStream, block_streams
from kvern.sim.policies import make_policy, sieve, slru
from kvern.sim.profiles import get_profile

ROOT = Path(__file__).resolve().parent.parent


def evictions(stream: BlockStream, policy: str, cap: int) -> tuple[np.ndarray, float]:
    """The evicted blocks in order, and the policy's telling number (see the module docstring)."""
    engine = get_profile("ideal").engine(stream, make_policy(policy), cap)
    engine.enable_eviction_log()
    out, stat = [], 0.0
    for r in range(stream.num_requests):
        engine.serve(np.array([r], np.int64))
        ev = engine.take_evicted()
        out.append(ev.copy())
        st = engine.state
        if policy == "lfu":
            stat += float((st.entry_f[ev] >= 2).sum())  # uses of the evicted blocks (kept at eviction)
        elif policy == "sieve":
            stat = st.scalars[sieve.CUR]
        else:
            stat = max(stat, st.scalars[slru.N_PROT])
    return np.concatenate(out), stat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", type=Path, default=ROOT / "traces" / "mooncake_conversation.jsonl")
    ap.add_argument("--capacity", type=int, nargs="+",
                    default=[1000, 2000, 5000, 1828, 3656, 9140, 18279, 36558])
    args = ap.parse_args()
    stream = next(iter(block_streams(load_trace(args.trace, Config())).values()))
    uses = Counter(np.minimum(np.bincount(stream.block_ids, minlength=stream.num_unique), 3).tolist())
    print(f"{args.trace.name}: {stream.num_unique:,} unique blocks; used once {uses[1]:,} "
          f"({uses[1] / stream.num_unique:.1%}), twice {uses[2]:,}, three times or more {uses[3]:,}")
    print("| capacity | evictions | lfu = sieve | lfu = slru | lfu evicts a block used ≥ 2× | "
          "sieve passes completed | slru protected peak / share |")
    print("|---:|---:|---|---|---:|---:|---:|")
    for cap in args.capacity:
        lfu, reused = evictions(stream, "lfu", cap)
        sv, passes = evictions(stream, "sieve", cap)
        sl, peak = evictions(stream, "slru", cap)
        share = int(cap * float(make_policy("slru").params["protected_ratio"]))
        print(f"| {cap:,} | {len(lfu):,} | {np.array_equal(lfu, sv)} | {np.array_equal(lfu, sl)} | "
              f"{int(reused)} | {int(passes)} | {int(peak):,} / {share:,} |", flush=True)


if __name__ == "__main__":
    main()
