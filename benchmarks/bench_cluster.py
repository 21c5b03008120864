"""``kvern cluster`` throughput: a generated trace × N replicas × every router (BENCHMARKS.md).

    python -m benchmarks.bench_cluster                  # 100k requests, 8 replicas, 7 routers
    python -m benchmarks.bench_cluster --jobs 2         # the settings in two processes
    python -m benchmarks.bench_cluster --cli --jobs 2   # also the whole command, end to end
    python -m benchmarks.bench_cluster --requests 20000 --replicas 4 --profile ideal

The trace comes from ``benchmarks/gen_trace.py`` (sessions scaled to reach the request count;
``--block-size`` tokens per id) as model ``default``, whose geometry (and so the time model)
is the one in the repository's ``config.yaml``. The run is ``kvern.cluster.run.run_cluster``
with ``--jobs`` local processes through ``kvern.infra.executor``, exactly what ``kvern cluster
--jobs N`` runs (one process: the settings one after another in this process; more: a fork
pool), timed after a small warm-up run that loads the compiled kernels. It includes the
reference (one cache of the summed capacity) and the building of the result tables, not the
reading of the trace or the writing of the report. With one job, the time of each setting is
shown, wall and CPU (the first one's includes the reference). CPU seconds of a whole run count
this process and its workers.

``--cli`` then writes the trace as an ingested Parquet file (block ids stored, as ``kvern
ingest`` writes it) and times ``python -m kvern cluster`` on it in a subprocess, from the
repository's root (its ``config.yaml``), with the same ``--jobs``: start-up, reading the
trace, the run, and writing every file and chart of the report.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.gen_trace import GenParams, generate
from benchmarks.streams import to_trace
from kvern.cluster.run import run_cluster
from kvern.infra.config import load_config
from kvern.infra.console import Output
from kvern.infra.executor import ExecutorSpec, open_executor
from kvern.ingest.stream import with_block_ids
from kvern.ingest.trace import Trace, write_trace

ROOT = Path(__file__).resolve().parent.parent
ROUTER_NAMES = ["round-robin", "session", "least-loaded", "prefix", "dynamo", "sglang", "llm-d"]
MODEL = "default"


class Clock(Output):
    """Quiet; records the time (wall, and CPU of this process) of every step of the run's
    progress (a finished task)."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.marks: list[tuple[float, float]] = []

    def progress(self, description: str, total: float | None) -> Iterator[Callable[[float], None]]:  # type: ignore[override]
        return contextlib.nullcontext(  # type: ignore[return-value]
            lambda _n: self.marks.append((time.perf_counter(), time.process_time())))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--capacity", type=int, default=20_000, help="GPU blocks per replica")
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--profile", default="vllm")
    ap.add_argument("--jobs", type=int, default=1, help="local processes (kvern cluster --jobs)")
    ap.add_argument("--cli", action="store_true", help="also time the whole kvern cluster command")
    args = ap.parse_args()
    hashes = generate(GenParams(sessions=max(10, args.requests // 5), block_size=args.block_size))
    whole = to_trace(hashes, MODEL)
    keep = min(args.requests, whole.num_requests)
    trace = Trace(whole.table.slice(0, keep), whole.meta)
    accesses = int(hashes.offsets[keep])
    print(f"trace: {keep:,} requests, {accesses:,} block accesses of {args.block_size} tokens")
    cfg = load_config(ROOT / "config.yaml")
    kw = {"routers": ROUTER_NAMES, "capacities": f"{args.capacity} blocks", "profile": args.profile}
    run_cluster(Trace(whole.table.slice(0, 200), whole.meta), cfg, replicas="2", **kw)  # type: ignore[arg-type]
    clock = Clock()
    executor = open_executor(ExecutorSpec(jobs=args.jobs))
    load0, cpu0, t0, p0 = os.getloadavg()[0], cpu_seconds(), time.perf_counter(), time.process_time()
    result = run_cluster(trace, cfg, replicas=str(args.replicas), executor=executor, out=clock,
                         **kw)  # type: ignore[arg-type]
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    rows = result.summary.to_pylist()
    if args.jobs == 1:
        starts = [(t0, p0), *clock.marks[:-1]]
        for row, start, end in zip(rows, starts, clock.marks, strict=True):
            dt, dc = end[0] - start[0], end[1] - start[1]
            print(f"{row['router']:13s} {dt:6.1f} s  {dc:5.1f} CPU s  {keep / dt:9,.0f} req/s  "
                  f"token hit rate {row['token_hit_rate']:.1%}")
    else:
        for row in rows:
            print(f"{row['router']:13s} token hit rate {row['token_hit_rate']:.1%}")
    print(f"run_cluster: {wall:.1f} s wall, {cpu:.1f} CPU s, --jobs {args.jobs}: {len(rows)} routers × "
          f"{args.replicas} replicas × {keep:,} requests (profile {args.profile}, {args.capacity:,} blocks "
          f"per replica); load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after")
    if args.cli:
        _time_cli(trace, args, kw)


def _time_cli(trace: Trace, args: argparse.Namespace, kw: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="kvern-bench-cluster-") as tmp:
        path = Path(tmp) / "trace.parquet"
        write_trace(with_block_ids(trace), path)
        opts = ["--replicas", str(args.replicas), "--router", ",".join(kw["routers"]), "--capacity",
                kw["capacities"], "--profile", kw["profile"], "--jobs", str(args.jobs)]
        cmd = [sys.executable, "-m", "kvern", "cluster", str(path), *opts, "-o", str(Path(tmp) / "report"),
               "--quiet"]
        print(f"$ kvern cluster TRACE.parquet {shlex.join(opts)} -o REPORT --quiet")
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, cwd=ROOT, check=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        size = sum(f.stat().st_size for f in (Path(tmp) / "report").iterdir())
        print(f"kvern cluster (whole command): {wall:.1f} s wall, {cpu:.1f} CPU s, --jobs {args.jobs}; "
              f"report {size / 1e6:.0f} MB; load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
