"""Speed of the cache-breaker search (BENCHMARKS.md, "Analysis").

    .venv/bin/python -m benchmarks.bench_breakers [--requests 20000] [--repeat 3]

A tokenized trace is built straight from token ids (no log, no tokenizer): 50 system prompts of
500 tokens, one token of each (a "date") changing every 2,000 requests, and a 200-token random
user part per request — so most requests share a long prefix and some diverge inside it. The
scan (``kvern.analysis.divergence.scan``: interning included) is timed after a JIT warm-up,
best of ``--repeat``; then the grouping with the real default tokenizer decoding each divergence.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pyarrow as pa

from kvern.analysis.breakers import find_breakers
from kvern.analysis.divergence import scan
from kvern.ingest.blocks import token_block_keys
from kvern.ingest.tokenizer import QWEN25, get_tokenizer
from kvern.ingest.trace import TRACE_SCHEMA, Trace, TraceMeta, with_meta


def build(n: int, block_size: int = 16, seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    systems = [rng.integers(1000, 50000, 500) for _ in range(50)]
    prompts = []
    for i in range(n):
        sys_ids = systems[i % 50].copy()
        sys_ids[10] = 900 + i // 2000
        prompts.append(np.concatenate([sys_ids, rng.integers(1000, 50000, 200)]).astype(np.int32))
    table = pa.table({
        "request_id": [str(i) for i in range(n)], "arrival_s": [float(i) for i in range(n)],
        "model": ["m"] * n, "session_id": [None] * n, "prompt_tokens": [len(p) for p in prompts],
        "output_tokens": [None] * n, "block_keys": [token_block_keys("m", p, block_size) for p in prompts],
        "token_ids": [p.tolist() for p in prompts],
    }, schema=TRACE_SCHEMA)
    meta = TraceMeta(block_size=block_size, source="bench", tokenizers={"m": QWEN25})
    return Trace(with_meta(table, meta), meta)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    trace = build(args.requests)
    tokens = int(np.sum(trace.table.column("prompt_tokens").to_numpy()))
    scan(build(50))  # JIT warm-up (compiled once, cached on disk)
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        found = scan(trace)
        best = min(best, time.perf_counter() - t0)
    tok = get_tokenizer(QWEN25)
    t0 = time.perf_counter()
    groups = find_breakers(trace, found, lambda _m, ids: tok.decode([int(i) for i in ids]))
    grouping = time.perf_counter() - t0
    print(f"{args.requests:,} requests, {tokens:,} tokens; {platform.processor() or platform.machine()}")
    rate = f"{args.requests / best:,.0f} requests/s, {tokens / best / 1e6:.1f} M tokens/s"
    print(f"scan: {best:.2f} s ({rate}), "
          f"{len(found.divergences):,} divergences, {found.lost_tokens:,} lost tokens")
    print(f"grouping + decoding: {grouping:.2f} s, {len(groups)} groups")


if __name__ == "__main__":
    main()
