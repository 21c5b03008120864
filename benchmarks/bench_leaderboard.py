"""The policy leaderboard (BENCHMARKS.md): every policy × shipped trace × capacity, ``ideal`` profile.

    .venv/bin/python -m benchmarks.bench_leaderboard [--profile ideal] [--markdown]

Traces: the Mooncake conversation and synthetic traces (512-token hash ids) and the chat sample.
Capacities: 1, 2, 5, 10 and 20 % of the trace's unique blocks (each model of a multi-model trace
gets a cache of that many blocks, as ``kvern compare`` does). Each cell is the token hit rate and
the share of the LRU→Belady gap the policy closes, ``(policy − lru) / (belady − lru)``; the last
columns are each policy's worst deficit against LRU on the trace, in points (the issue's rule: a
learned policy must not win one trace by losing another by more than 0.5 points).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kvern.infra.config import Config
from kvern.ingest.pipeline import load_trace
from kvern.ingest.stream import BlockStream, block_streams
from kvern.sim.policies import POLICIES
from kvern.sim.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
TRACES = {"mooncake_conversation": ROOT / "traces" / "mooncake_conversation.jsonl",
          "mooncake_synthetic": ROOT / "traces" / "mooncake_synthetic.jsonl",
          "chat_sample": ROOT / "traces" / "chat_sample.jsonl"}
SHARES = (0.01, 0.02, 0.05, 0.10, 0.20)


def capacities(streams: list[BlockStream]) -> list[int]:
    """1/2/5/10/20 % of the unique blocks of all the trace's models together."""
    unique = sum(s.num_unique for s in streams)
    return [max(1, round(unique * f)) for f in SHARES]


def token_hit_rate(streams: list[BlockStream], policy: str, cap: int, profile: str) -> float:
    """Percent of prompt tokens served from cache, over every model of the trace."""
    total = cached = 0
    for s in streams:
        r = simulate(s, policy, cap, profile)
        total += r.total_prompt_tokens
        cached += r.total_cached_tokens
    return 100.0 * cached / total if total else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="ideal")
    ap.add_argument("--policies", default=",".join(POLICIES))
    args = ap.parse_args()
    policies = args.policies.split(",")
    for name, path in TRACES.items():
        streams = list(block_streams(load_trace(path, Config())).values())
        caps = capacities(streams)
        rates = {(p, c): token_hit_rate(streams, p, c, args.profile) for p in policies for c in caps}
        unique = sum(s.num_unique for s in streams)
        print(f"\n### {name} ({unique:,} unique blocks; profile {args.profile})\n")
        print("token hit rate % (share of the LRU→Belady gap closed)\n")
        print("| policy | " + " | ".join(f"C={c:,} ({f:.0%})" for c, f in zip(caps, SHARES, strict=True))
              + " | worst vs LRU |")
        print("|---|" + "---:|" * (len(caps) + 1))
        for p in policies:
            cells = []
            for c in caps:
                lru, bel, x = rates[("lru", c)], rates[("belady", c)], rates[(p, c)]
                shown = bel - lru > 1e-9 and p not in ("lru", "belady")
                gap = f" ({100 * (x - lru) / (bel - lru):+.1f} %)" if shown else ""
                cells.append(f"{x:.2f}{gap}")
            worst = min(rates[(p, c)] - rates[("lru", c)] for c in caps)
            print(f"| {p} | " + " | ".join(cells) + f" | {worst:+.2f} |", flush=True)


if __name__ == "__main__":
    main()
