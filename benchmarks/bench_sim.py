"""Simulator speed: blocks/s and peak RSS per unique block, against libCacheSim and a naive LRU.

    .venv/bin/python -m benchmarks.bench_sim --trace synthetic --trace mooncake16

Every engine runs in a fresh process on the same cached stream: JIT warm-up on a tiny stream
first, then ``--repeat`` timed runs (best wall and best CPU time kept; the machine may be
shared, and CPU time is the steadier of the two), with the kernel's peak-RSS mark reset just
before the first, so "peak RSS" is what one run itself added. Engines:

* ``kvern-lru``: kvern's LRU at one capacity (``kvern.sim.kernels.lru_run``), prefix-closed.
* ``kvern-curve``: the one-pass LRU curve for every capacity (``kvern.sim.curve.lru_curve``).
* ``libcachesim-lru``: libCacheSim's LRU through the ``libcachesim`` binding, as a plain object
  cache (unit-size objects, capacity in objects) on the same accesses flattened in kvern's
  touch order (each request tail → head), read by its C reader from an oracleGeneral file.
* ``ordereddict-lru``: the textbook Python LRU on the same flattened accesses.
* ``sim-<policy>[@profile]``: the policy-generic simulator (``kvern.sim.simulate.simulate``),
  profile ``ideal`` unless named; its hit share is in tokens, the others' in blocks.
* ``replay-<policy>``: the whole command as a user runs it, in a fresh process:
  ``python -m kvern replay TRACE.parquet --policy P --capacity C --profile ideal -q --no-charts``
  on the trace already ingested (its block ids stored); start-up, reading, simulation and the
  report included. Its time is the process's; its peak RSS is the process's own peak.
* ``libcachesim-<policy>``: libCacheSim's policy in process on the flattened accesses (lru,
  fifo, lfu, belady as ``libcachesim-lru`` etc.), for the side-by-side table.

The capacity is a share of the stream's unique blocks (``--capacity-share``, default 0.1).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import xxhash

from benchmarks.streams import SCRATCH, TRACES, cached_stream, cached_trace_file, flattened, load_stream
from kvern.ingest.stream import BlockStream

ENGINES = ["kvern-lru", "kvern-curve", "libcachesim-lru", "ordereddict-lru"]
SIM_POLICIES = ["lru", "fifo", "lfu", "cost", "belady"]


# -- one engine, in its own process ------------------------------------------------------------

def run_engine(engine: str, stream: BlockStream, capacity: int, repeat: int = 1) -> dict[str, Any]:
    """Time one engine on ``stream``: best wall and CPU seconds of ``repeat`` runs, the peak RSS
    the first run added, and its hit share."""
    prepare, run = _ENGINE_FNS[engine] if engine in _ENGINE_FNS else _sim_engine(engine)
    arg = prepare(stream, capacity)
    _warm_up(engine)
    gc.collect()
    base = psutil.Process().memory_info().rss
    _reset_peak_rss()
    walls, cpus = [], []
    peak = None
    for i in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        kind, share = run(arg, capacity)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if i == 0:
            peak = _peak_rss()
        gc.collect()
    return {"engine": engine, "seconds": min(walls), "cpu_seconds": min(cpus), "repeat": repeat,
            "accesses": len(stream.block_ids), "unique": stream.num_unique, "capacity": capacity,
            "hit_kind": kind, "hit_share": share,
            "peak_rss_added": None if peak is None else max(peak - base, 0)}


def _kvern_lru(stream: BlockStream, capacity: int) -> tuple[str, float]:
    from kvern.sim.kernels import lru_run

    return "blocks", int(lru_run(stream, capacity).found_blocks.sum()) / len(stream.block_ids)


def _kvern_curve(stream: BlockStream, capacity: int) -> tuple[str, float]:
    from kvern.sim.curve import lru_curve

    return "blocks", lru_curve(stream).at(capacity).hit_blocks / len(stream.block_ids)


def _lcs_prepare(stream: BlockStream, capacity: int) -> Path:
    flat = flattened(stream)
    rec = np.zeros(len(flat), np.dtype([("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")]))
    rec["id"] = flat.astype(np.uint64) + 1
    rec["size"] = 1
    rec["next"] = -1
    path = SCRATCH / f"flat-{xxhash.xxh3_64_hexdigest(flat.tobytes())}.oracleGeneral"
    if not path.exists():
        rec.tofile(path)
    return path


def _lcs_run(path: Path, capacity: int, policy: str = "LRU") -> tuple[str, float]:
    import libcachesim as lcs

    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    cache = getattr(lcs, policy)(capacity, hashpower=24)
    miss_ratio, _ = cache.process_trace(reader)
    return "blocks", 1.0 - miss_ratio


_LCS_NAMES = {"lru": "LRU", "fifo": "FIFO", "lfu": "LFU", "belady": "Belady", "s3fifo": "S3FIFO",
              "arc": "ARC"}


def _od_run(flat: list[int], capacity: int) -> tuple[str, float]:
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for b in flat:
        if b in cache:
            cache.move_to_end(b)
            hits += 1
        else:
            cache[b] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return "blocks", hits / len(flat)


_ENGINE_FNS = {
    "kvern-lru": (lambda s, c: s, _kvern_lru),
    "kvern-curve": (lambda s, c: s, _kvern_curve),
    "ordereddict-lru": (lambda s, c: flattened(s).tolist(), _od_run),
    **{f"libcachesim-{p}": (_lcs_prepare, lambda path, c, name=name: _lcs_run(path, c, name))
       for p, name in _LCS_NAMES.items()},
}


def _sim_engine(engine: str) -> tuple[Any, Any]:
    """``sim-<policy>[@profile]``: the simulator's ``simulate`` at one capacity (profile ideal)."""
    from kvern.sim.simulate import simulate

    policy, _, profile = engine.removeprefix("sim-").partition("@")

    def run(stream: BlockStream, capacity: int) -> tuple[str, float]:
        res = simulate(stream, policy, capacity, profile or "ideal")
        return "tokens", res.total_cached_tokens / res.total_prompt_tokens

    return (lambda s, c: s), run


def run_replay_process(policy: str, trace_file: Path, capacity: int, repeat: int) -> dict[str, Any]:
    """``kvern replay`` as a fresh process, ``repeat`` times: best wall and CPU, its own peak RSS."""
    import tempfile

    walls, cpus, peaks = [], [], []
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "kvern", "replay", str(trace_file), "--policy", policy, "--capacity",
               str(capacity), "--profile", "ideal", "-q", "--no-charts", "-o", out]
        # As an install runs: Python's bytecode cache on, whatever this environment says.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run(cmd, check=True, env=env)  # warm-up: numba's on-disk cache, the page cache
        for _ in range(repeat):
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            walls.append(time.perf_counter() - t0)
            assert os.waitstatus_to_exitcode(status) == 0, cmd
            cpus.append(usage.ru_utime + usage.ru_stime)
            peaks.append(usage.ru_maxrss * 1024)
        summary = json.loads((Path(out) / "summary.json").read_text())["summary"][0]
    return {"engine": f"replay-{policy}", "seconds": min(walls), "cpu_seconds": min(cpus), "repeat": repeat,
            "capacity": capacity, "hit_kind": "tokens", "hit_share": summary["token_hit_rate"],
            "peak_rss_added": min(peaks)}


def _warm_up(engine: str) -> None:
    """Compile numba kernels on a tiny stream so the timed run measures the run only."""
    from benchmarks.gen_trace import GenParams, generate
    from benchmarks.streams import to_stream

    if engine.startswith(("kvern", "sim-")):
        tiny = to_stream(generate(GenParams(sessions=5, documents=3, system_prompts=2)))
        prepare, run = _ENGINE_FNS[engine] if engine in _ENGINE_FNS else _sim_engine(engine)
        run(prepare(tiny, 10), 10)


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS


def _peak_rss() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# -- driver ------------------------------------------------------------------------------------

def bench(trace: str, engines: list[str], share: float, repeat: int) -> list[dict[str, Any]]:
    stream, path = cached_stream(trace)
    capacity = max(1, round(share * stream.num_unique))
    rows = []
    for engine in engines:
        if engine.startswith("replay-"):
            policy = engine.removeprefix("replay-")
            row = run_replay_process(policy, cached_trace_file(trace), capacity, repeat)
            row.update(accesses=len(stream.block_ids), unique=stream.num_unique, trace=trace)
            rows.append(row)
            print(_fmt(row), file=sys.stderr, flush=True)
            continue
        cmd = [sys.executable, "-m", "benchmarks.bench_sim", "--child", engine, "--data", str(path),
               "--capacity", str(capacity), "--repeat", str(repeat)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["trace"] = trace
        rows.append(row)
        print(_fmt(row), file=sys.stderr, flush=True)
    return rows


def _fmt(row: dict[str, Any]) -> str:
    rate = row["accesses"] / row["seconds"]
    rss = row["peak_rss_added"]
    per = "n/a" if rss is None else f"{rss / row['unique']:.1f}"
    cpu_rate = row["accesses"] / row["cpu_seconds"]
    return (f"| {row['trace']} | {row['engine']} | {row['capacity']:,} | {row['seconds']:.2f} | "
            f"{row['cpu_seconds']:.2f} | {rate / 1e6:.1f} M | {cpu_rate / 1e6:.1f} M | {per} | "
            f"{row['hit_share']:.4f} of {row['hit_kind']} |")


HEADER = ("| trace | engine | capacity | wall s | CPU s | blocks/s (wall) | blocks/s (CPU) | "
          "peak RSS B/unique | hit share |\n|---|---|--:|--:|--:|--:|--:|--:|--:|")


def main() -> None:
    ap = argparse.ArgumentParser(description="simulator speed against libCacheSim and a naive LRU")
    ap.add_argument("--trace", action="append", choices=list(TRACES), help="repeatable")
    ap.add_argument("--engine", action="append",
                    help=f"repeatable; default {ENGINES}; also sim-<policy>, replay-<policy>, "
                    "libcachesim-<policy>")
    ap.add_argument("--capacity-share", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=3, help="runs per engine; the best is kept")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--capacity", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_engine(args.child, load_stream(args.data), args.capacity, args.repeat)))
        return
    print(f"machine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs, "
          f"Python {platform.python_version()}", file=sys.stderr)
    for t in args.trace or ["synthetic", "mooncake16"]:
        stream, _ = cached_stream(t)
        print(f"{t}: {TRACES[t]}; {stream.num_requests:,} requests, {len(stream.block_ids):,} block "
              f"accesses, {stream.num_unique:,} unique blocks", file=sys.stderr)
    print(HEADER, file=sys.stderr)
    rows = [r for t in args.trace or ["synthetic", "mooncake16"]
            for r in bench(t, args.engine or ENGINES, args.capacity_share, args.repeat)]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
