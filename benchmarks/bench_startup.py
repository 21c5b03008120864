"""Start-up of each command: ``--help`` and a run on a three-request trace, in fresh processes.

    .venv/bin/python -m benchmarks.bench_startup            # 5 runs each, the median kept

``--help`` is the CLI's own start-up (imports of the command's options, Typer's parsing). The
tiny run is what every run of the command pays before and after its real work: the imports it
needs, numba loading its cached kernels (its typing context: most of it), reading and writing.
For each, the heavy modules the process imported (from ``python -X importtime``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# As a user's install runs: Python's bytecode cache on (an environment that turns it off makes
# every run recompile kvern's ~100 modules, about 0.07 s).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
HEAVY = ("numpy", "pyarrow", "pandas", "numba", "matplotlib", "transformers", "jinja2", "aiohttp", "ray")


def _cases(work: Path) -> list[tuple[str, list[str]]]:
    tiny, parquet = work / "tiny.jsonl", work / "tiny.parquet"
    lines = (ROOT / "traces" / "mooncake_conversation.jsonl").read_text().splitlines()[:3]
    tiny.write_text("\n".join(lines) + "\n")
    subprocess.run([sys.executable, "-m", "kvern", "ingest", str(tiny), "-o", str(parquet), "-q"],
                   check=True, cwd=work, env=ENV)
    runs = [
        ("ingest (tiny log)", ["ingest", str(tiny), "-o", str(work / "i.parquet"), "-q", "--no-cache"]),
        ("replay (tiny trace)", ["replay", str(parquet), "-q", "--no-charts", "-o", str(work / "r")]),
        ("replay with charts", ["replay", str(parquet), "-q", "-o", str(work / "rc")]),
        ("compare (tiny trace)", ["compare", str(parquet), "--policies", "lru,fifo", "-q", "--no-charts",
                                  "-o", str(work / "c")]),
        ("sweep (tiny trace)", ["sweep", str(parquet), "-q", "--no-charts", "-o", str(work / "s")]),
        ("gate (tiny trace)", ["gate", str(parquet), "--min-hit-rate", "0", "-q"]),
        ("analyze (tiny trace)", ["analyze", str(parquet), "-q", "-o", str(work / "a")]),
        ("cluster (tiny trace)", ["cluster", str(parquet), "--replicas", "2", "-q", "-o", str(work / "k")]),
    ]
    helps = [("--help", ["--help"])] + [
        (f"{c} --help", [c, "--help"])
        for c in ("ingest", "replay", "compare", "sweep", "gate", "analyze", "cluster", "proxy",
                  "report", "dashboard")]
    return helps + runs


def _once(args: list[str], cwd: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "kvern", *args], cwd=cwd, capture_output=True, env=ENV)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"kvern {' '.join(args)}: exit {res.returncode}\n{res.stderr.decode()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _heavy(args: list[str], cwd: Path) -> list[str]:
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "kvern", *args], cwd=cwd,
                         capture_output=True, text=True, env=ENV)
    names = set()
    for line in res.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, cumulative, name = line.split("|")
            # a held-back import shows too, at a few microseconds
            if name.strip() in HEAVY and cumulative.strip().isdigit() and int(cumulative) > 1000:
                names.add(name.strip())
    return [n for n in HEAVY if n in names]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases = _cases(work)
        for _, argv in cases:  # warm: numba's on-disk cache, the OS page cache
            _once(argv, work)
        print("| command | wall s (median) | CPU s (median) | heavy imports |")
        print("|---|--:|--:|---|")
        for label, argv in cases:
            runs = [_once(argv, work) for _ in range(args.repeat)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            print(f"| `kvern {label}` | {wall:.2f} | {cpu:.2f} | {', '.join(_heavy(argv, work)) or '–'} |")


if __name__ == "__main__":
    main()
