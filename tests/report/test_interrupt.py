"""Ctrl-C during ``kvern compare``: the finished simulations are written, marked partial, exit 130."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kvern.infra.config import Config
from kvern.infra.console import Output
from kvern.report.write import PARTIAL_KEY, write_report
from kvern.sim.run import RunInterrupted, run_simulation
from tests.report.test_report import two_model_trace

REQUESTS = 20_000
POLICIES = "lru,fifo,lfu,belady"
# Enough runs that a Ctrl-C sent once the progress bar shows the second one lands mid-run: the
# bar redraws ten times a second, and each of these runs takes only a few tens of milliseconds.
CAPACITIES = "50,100,150,200,300,400,500,600,800,1000,1200,1400,1600,2000,2400,3200"
UNITS = 4 * 16


def hash_id_log(path: Path) -> Path:
    """A Mooncake-style log: Pareto-popular shared prefixes with unique tails (seeded)."""
    rng = random.Random(7)
    prefixes = [list(range(i * 100, i * 100 + rng.randint(2, 40))) for i in range(200)]
    fresh, lines = 10**6, []
    for i in range(REQUESTS):
        p = prefixes[int(rng.paretovariate(1.2)) % len(prefixes)]
        tail = list(range(fresh, fresh + rng.randint(1, 8)))
        fresh += len(tail)
        ids = p[: rng.randint(1, len(p))] + tail
        lines.append(json.dumps({"timestamp": i * 10, "input_length": len(ids) * 512 - rng.randint(0, 500),
                                 "output_length": 5, "hash_ids": ids}))
    path.write_text("\n".join(lines) + "\n")
    return path


def compare(log: Path, out: Path, cwd: Path) -> subprocess.Popen[bytes]:
    # FORCE_COLOR makes the progress bar draw on a pipe: its request count says how far the run is.
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "120"}
    return subprocess.Popen([sys.executable, "-m", "kvern", "compare", str(log), "--policies", POLICIES,
                             "--capacity", CAPACITIES, "--profile", "vllm", "-o", str(out)],
                            cwd=cwd, env=env, stdout=open(cwd / f"{out.name}.stdout", "wb"),
                            stderr=subprocess.PIPE)


def progress_counts(stream: int) -> Iterator[int]:
    """Requests simulated so far, as the progress bar shows them, until the stream ends."""
    count = re.compile(rb"(\d+)/" + str(REQUESTS * UNITS).encode())
    buf = b""
    while chunk := os.read(stream, 65536):
        buf = buf[-64:] + chunk
        for m in count.finditer(buf):
            yield int(m.group(1))


def test_ctrl_c_keeps_the_finished_simulations(tmp_path: Path) -> None:
    log = hash_id_log(tmp_path / "big.jsonl")
    full = compare(log, tmp_path / "full", tmp_path)  # also warms the ingest and numba caches
    full.communicate()
    assert full.returncode == 0

    run = compare(log, tmp_path / "cut", tmp_path)
    assert run.stderr is not None
    # Past the first simulation and into the second: at least one unit has finished.
    if any(n >= REQUESTS * 3 // 2 for n in progress_counts(run.stderr.fileno())):
        run.send_signal(signal.SIGINT)
    err = run.communicate()[1].decode(errors="replace")
    assert run.returncode == 130, err
    assert "partial report written to" in err

    doc = json.loads((tmp_path / "cut" / "summary.json").read_text())
    settings = doc["settings"]
    assert settings["partial"] is True
    not_run = settings["not_run"]
    done = UNITS - len(not_run)
    assert 1 <= done < UNITS
    full_doc = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert "partial" not in full_doc["settings"] and "not_run" not in full_doc["settings"]
    assert {k: v for k, v in settings.items() if k not in ("partial", "not_run")} == full_doc["settings"]
    # The finished rows are the full run's first ones (belady runs last: no gap before it ran).
    rows = doc["summary"]
    assert len(rows) == done
    for cut, whole in zip(rows, full_doc["summary"], strict=False):
        assert {**cut, "gap_to_belady": None} == {**whole, "gap_to_belady": None}
    assert {(r["policy"], r["capacity"]) for r in full_doc["summary"][done:]} == {
        (u["policy"], u["capacity"]) for u in not_run}

    for name in ("summary.parquet", "requests.parquet"):
        cut_t, full_t = pq.read_table(tmp_path / "cut" / name), pq.read_table(tmp_path / "full" / name)
        mark = json.loads(cut_t.schema.metadata[PARTIAL_KEY])
        assert mark == {"partial": True, "not_run": not_run}
        assert full_t.schema.metadata is None or PARTIAL_KEY not in full_t.schema.metadata
    cut_req = pq.read_table(tmp_path / "cut" / "requests.parquet")
    full_req = pq.read_table(tmp_path / "full" / "requests.parquet")
    assert cut_req.num_rows == done * REQUESTS
    head = full_req.slice(0, cut_req.num_rows)
    assert cut_req.replace_schema_metadata(None).equals(head.replace_schema_metadata(None))
    assert "PARTIAL" in (tmp_path / "cut.stdout").read_text()
    assert not list((tmp_path / "cut").glob(".*.tmp"))


class CtrlCAfter(Output):
    """A quiet ``Output`` whose progress raises KeyboardInterrupt once ``n`` requests have run:
    Ctrl-C at a chosen point, in process."""

    def __init__(self, n: int) -> None:
        super().__init__(quiet=True)
        self.left = n

    def progress(self, description: str, total: float | None) -> Iterator[Callable[[float], None]]:  # type: ignore[override]
        import contextlib

        def advance(k: float) -> None:
            self.left -= int(k)
            if self.left <= 0:
                raise KeyboardInterrupt

        return contextlib.nullcontext(advance)  # type: ignore[return-value]


def test_interrupted_two_model_run_has_only_whole_rows(tmp_path: Path) -> None:
    # Plan order: model g (lru@2, lru@10, belady@2, belady@10), then model n (same). g has 2
    # requests, n 2; the interrupt lands in n's second simulation (lru@10): 5 units finished.
    trace = two_model_trace()
    with pytest.raises(RunInterrupted) as info:
        run_simulation(trace, Config(), policies="lru,belady", capacities="2,10", profile="ideal",
                       out=CtrlCAfter(2 * 4 + 2 + 1))
    res = info.value.result
    assert info.value.planned == 8 and len(res.results) == 5
    assert res.partial
    assert res.settings["not_run"] == [{"model": "n", "policy": "lru", "capacity": "10"},
                                       {"model": "n", "policy": "belady", "capacity": "2"},
                                       {"model": "n", "policy": "belady", "capacity": "10"}]
    full = run_simulation(trace, Config(), policies="lru,belady", capacities="2,10", profile="ideal")
    # Only lru@2 has run on both models: the one aggregate row, as in the full run but no gap yet.
    [agg] = [r for r in res.summary_rows() if r["model"] == "*"]
    whole = next(r for r in full.summary_rows()
                 if (r["model"], r["policy"], r["capacity"]) == ("*", "lru", "2"))
    assert agg == {**whole, "gap_to_belady": None}
    assert res.requests.equals(full.requests.slice(0, 5 * 2))
    # Each finished simulation has its model's own row; n has no Belady yet, so no gap for it.
    own, full_own = res.model_rows(), full.model_rows()
    assert [(r["model"], r["policy"], r["capacity"]) for r in own] == [
        (r["model"], r["policy"], r["capacity"]) for r in full_own[:5]]
    assert own[:4] == full_own[:4] and own[4] == {**full_own[4], "gap_to_belady": None}
    written = write_report(res, tmp_path)
    assert {p.name for p in written} >= {"summary.json", "policies.png", "timeline.png"}
    assert json.loads((tmp_path / "summary.json").read_text())["settings"]["partial"] is True
    assert isinstance(pq.read_table(tmp_path / "requests.parquet"), pa.Table)


def test_interrupted_sweep_keeps_the_finished_points(tmp_path: Path) -> None:
    from trace_paths import MOONCAKE

    from kvern.ingest.blocks import hash_id_block_keys
    from kvern.report.sweep import points_table, sweep_document, write_sweep
    from kvern.sim.sweep import SweepInterrupted, run_sweep
    from tests.sim.curve_helpers import make_trace

    rows = [json.loads(line) for line in MOONCAKE.read_text().splitlines()[:1500]]
    trace = make_trace([(hash_id_block_keys("default", r["hash_ids"]), r["input_length"]) for r in rows], 512)
    kw = {"policies": "lru,fifo", "capacity": "100:5000", "points": 4, "profile": "vllm", "jobs": 1}
    full = run_sweep(trace, Config(), **kw)  # type: ignore[arg-type]
    # Tasks: the unbounded LRU run (the achievable rate), lru × 4, fifo × 4; Ctrl-C after 6.
    with pytest.raises(SweepInterrupted) as info:
        run_sweep(trace, Config(), out=CtrlCAfter(6), **kw)  # type: ignore[arg-type]
    cut = info.value.result
    (m,), (whole,) = cut.models, full.models
    assert cut.partial and not full.partial
    assert cut.settings["not_run"] == [{"model": m.model, "policy": "fifo", "capacity_blocks": c}
                                       for c in whole.capacities[1:]]
    assert m.achievable_tokens == whole.achievable_tokens
    assert m.points == whole.points[:5]
    # lru ran at every capacity: its answers stand; fifo's could change with the missing points.
    assert m.answers == [a for a in whole.answers if a.policy == "lru"]
    assert points_table(cut).equals(points_table(full).slice(0, 5))
    write_sweep(cut, tmp_path)
    mark = json.loads(pq.read_table(tmp_path / "sweep.parquet").schema.metadata[PARTIAL_KEY])
    assert mark == {"partial": True, "not_run": cut.settings["not_run"]}
    assert json.loads((tmp_path / "sweep.json").read_text()) == json.loads(json.dumps(sweep_document(cut)))
    assert "partial" not in sweep_document(full)["settings"]


def test_ctrl_c_ends_a_parallel_sweep_and_keeps_its_finished_points(tmp_path: Path) -> None:
    log = hash_id_log(tmp_path / "big.jsonl")
    tasks = 1 + 3 * 24  # the achievable-rate run, then 3 policies × 24 capacities (each a few
    # tens of milliseconds: enough of them that the Ctrl-C, sent at the third, lands mid-run)

    def sweep(out: Path) -> subprocess.Popen[bytes]:
        env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "120"}
        return subprocess.Popen([sys.executable, "-m", "kvern", "sweep", str(log), "--policies",
                                 "lru,fifo,lfu", "--profile", "vllm", "--points", "24", "--jobs", "2",
                                 "-o", str(out)],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    full = sweep(tmp_path / "full")
    full.communicate()
    assert full.returncode == 0
    run = sweep(tmp_path / "cut")
    assert run.stderr is not None
    done = re.compile(rb"(\d+)/" + str(tasks).encode() + rb"(?!\d)")
    buf = b""
    while chunk := os.read(run.stderr.fileno(), 65536):
        buf = buf[-64:] + chunk
        if any(int(m.group(1)) >= 3 for m in done.finditer(buf)):
            run.send_signal(signal.SIGINT)
            break
    err = run.communicate()[1].decode(errors="replace")
    assert run.returncode == 130, err
    workers = subprocess.run(["ps", "--ppid", str(run.pid), "-o", "pid="], capture_output=True, text=True)
    assert workers.stdout.strip() == ""  # the pool's workers were ended with it

    doc = json.loads((tmp_path / "cut" / "sweep.json").read_text())
    assert doc["settings"]["partial"] is True and 1 <= len(doc["settings"]["not_run"]) <= tasks - 3
    key = ["model", "policy", "capacity_blocks"]
    cut_t = pq.read_table(tmp_path / "cut" / "sweep.parquet")
    full_t = pq.read_table(tmp_path / "full" / "sweep.parquet")
    assert json.loads(cut_t.schema.metadata[PARTIAL_KEY])["not_run"] == doc["settings"]["not_run"]
    finished = {tuple(r[k] for k in key): r for r in cut_t.to_pylist()}
    ran = {tuple(r[k] for k in key): r for r in full_t.to_pylist()}
    # A point's own results equal the full run's; the achievable rate comes from another task,
    # which the interrupt may have stopped first: then it is null, never wrong.
    derived = "achievable_token_hit_rate"
    diff = {k: {c: (r[c], ran[k][c]) for c in r if r[c] != ran[k][c] and not (c == derived and r[c] is None)}
            for k, r in finished.items()}
    assert finished and not any(diff.values()), diff
    missing = {(u["model"], u["policy"], u["capacity_blocks"]) for u in doc["settings"]["not_run"]}
    assert set(ran) - set(finished) <= missing
