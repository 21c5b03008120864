"""Ingest throughput by executor: local 1 process, local 2, Ray 1 worker, Ray 2 workers; Ray's
overhead per task.

    .venv/bin/python -m benchmarks.gen_chat_log -o /tmp/big.jsonl          # >= 1 GB
    .venv/bin/python -m benchmarks.bench_scale_out /tmp/big.jsonl [--modes local1,local2,ray1,ray2]

Each mode ingests the whole log from scratch (no ingest cache) through
``kvern.ingest.pipeline.ingest_to``, the function ``kvern ingest`` runs, which writes the trace
to ``--out-dir`` a row group at a time; the files of all modes must be byte-identical (checked:
a mode that disagrees fails the run). Wall time covers reading, cutting, tokenizing, hashing,
spilling, ordering and writing the Parquet file (with bounded memory the write is part of the
ingest). ``rayN`` starts a local Ray with N CPUs for this process (the driver that reads and
cuts the log is this process, as with ``kvern ingest --executor ray``). The driver's peak RSS is
this process's, so far: run one mode per invocation to read it per mode.

The overhead per task is measured on no-op tasks: the latency of one task submitted and
awaited alone, and the throughput of many no-op tasks kept in flight (what a sweep's thousands
of small simulations see).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

from kvern.infra.config import Config
from kvern.infra.executor import LocalExecutor, RayExecutor
from kvern.ingest.pipeline import ingest_to
from kvern.ingest.trace import read_trace


def _noop(shared: Any, item: int) -> int:
    return item


def _ray(cpus: int) -> RayExecutor:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    package = Path(__file__).resolve().parent.parent / "kvern"
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [str(package)], "excludes": ["__pycache__", "*.pyc"]},
             object_store_memory=2 * 2**30)
    return RayExecutor()


def executor(mode: str) -> Any:
    if mode.startswith("local"):
        return LocalExecutor(int(mode[5:]))
    return _ray(int(mode[3:]))


def overhead(ex: Any, n: int = 400) -> tuple[float, float]:
    """(ms for one no-op task alone, median of 20; ms per task with many in flight)."""
    list(ex.map(_noop, range(4)))  # workers up
    alone = []
    for i in range(20):
        t0 = time.perf_counter()
        list(ex.map(_noop, [i]))
        alone.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    list(ex.map(_noop, range(n), window=64))
    many = (time.perf_counter() - t0) / n
    return sorted(alone)[len(alone) // 2] * 1e3, many * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--modes", default="local1,local2,ray1,ray2")
    ap.add_argument("--shard-mb", type=float, default=16.0)
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp"))
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cfg = Config()
    cfg = cfg.model_copy(update={"executor": cfg.executor.model_copy(update={"shard_mb": args.shard_mb})})
    size = args.log.stat().st_size
    print(f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"log {args.log.name}: {size / 1e9:.2f} GB, shards of {args.shard_mb:g} MB")
    digests = {}
    for mode in args.modes.split(","):
        ex = executor(mode)
        out = args.out_dir / f"bench_scale_out_{mode}.parquet"
        t0, c0 = time.perf_counter(), time.process_time()
        ingest_to(args.log, cfg, out, executor=ex)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        tokens = int(read_trace(out).column("prompt_tokens").to_numpy().sum())
        h = hashlib.sha256()
        with open(out, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
        digests[mode] = h.hexdigest()
        out.unlink()
        line = (f"{mode:7s} {wall:8.1f} s  {tokens / wall / 1e6:6.2f} M tokens/s  "
                f"{size / wall / 1e6:6.2f} MB/s "
                f"({tokens / 1e6:,.0f} M tokens)  trace sha256 {digests[mode][:12]}")
        if mode == "local1":  # CPU time: the rate of one core, whatever else the machine runs
            line += f"  ({tokens / cpu / 1e6:.2f} M tokens per CPU second)"
        else:
            one, many = overhead(ex)
            line += f"  no-op task: {one:.2f} ms alone, {many:.3f} ms each in flight"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(line + f"  driver peak RSS so far {peak:,.0f} MB  load {os.getloadavg()[0]:.1f}", flush=True)
    assert len(set(digests.values())) == 1, f"traces differ between modes: {digests}"
    print("every mode wrote the same trace")


if __name__ == "__main__":
    main()
