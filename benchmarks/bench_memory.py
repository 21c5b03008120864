"""Peak memory of one kvern command: its process's peak RSS, wall and CPU time.

    .venv/bin/python -m benchmarks.bench_memory ingest /tmp/big.jsonl -o /tmp/big.parquet
    .venv/bin/python -m benchmarks.bench_memory compare /tmp/big.parquet --profile vllm --no-charts
    .venv/bin/python -m benchmarks.bench_memory ingest /tmp/big.jsonl --executor ray -o /tmp/big.parquet

The command runs as ``python -m kvern ARGS`` in a child process with a fresh, empty ingest cache
(``--cache DIR`` to keep one), so a log is ingested from scratch. The peak RSS is the kvern
process's own (``getrusage(RUSAGE_SELF)`` at its exit): with ``--executor ray`` that is the
driver's, the Ray workers are other processes. The child imports whatever ``kvern`` its
``PYTHONPATH`` gives, so two checkouts can be compared with the same script.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

_HOOK = """
import atexit, resource, sys, time
_t0 = time.perf_counter()
def _say():
    u = resource.getrusage(resource.RUSAGE_SELF)
    print(f"@@peak {u.ru_maxrss} cpu {u.ru_utime + u.ru_stime:.2f}", file=sys.stderr)
atexit.register(_say)
from kvern.cli import main
sys.argv = ["kvern", *sys.argv[1:]]
main()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--cache", help="ingest cache folder (default: a fresh one)")
    args, kvern_args = ap.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as fresh:
        env = {**os.environ, "KVERN_INGEST_CACHE": args.cache or fresh, "RAY_USAGE_STATS_ENABLED": "0"}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _HOOK, *kvern_args], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
    said = [line for line in done.stderr.splitlines() if line.startswith("@@peak ")]
    if not said:
        sys.exit(f"kvern {' '.join(kvern_args)}: exit {done.returncode}\n{done.stderr[-2000:]}")
    _, peak_kb, _, cpu = said[-1].split()
    print(f"kvern {' '.join(kvern_args)}: exit {done.returncode}, wall {wall:.1f} s, CPU {float(cpu):.1f} s, "
          f"peak RSS {int(peak_kb) / 1024:,.0f} MB (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
