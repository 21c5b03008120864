"""Ctrl-C during ``kvern cluster`` (a real process, SIGINT): the settings that finished are
written, marked partial, exactly as the whole run has them; the one in flight is dropped;
nothing is left half-written; the command exits 130. One process and two (``--jobs 2``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kvern.report.write import PARTIAL_KEY
from tests.report.test_interrupt import REQUESTS, hash_id_log

REPLICAS = [2, 4, 8]
ROUTERS = ["round-robin", "least-loaded", "prefix", "sglang"]
SETTINGS = len(REPLICAS) * len(ROUTERS)
WHOLE = ("cluster.parquet", "summary.parquet", "summary.json")


def cluster(log: Path, out: Path, env: dict[str, str], jobs: int) -> subprocess.Popen[bytes]:
    # FORCE_COLOR makes the progress bar draw on a pipe: its count says how far the run is.
    return subprocess.Popen(
        [sys.executable, "-m", "kvern", "cluster", str(log), "--replicas", ",".join(map(str, REPLICAS)),
         "--router", ",".join(ROUTERS), "--capacity", "100", "--profile", "vllm", "--jobs", str(jobs),
         "-o", str(out)],
        cwd=out.parent, env={**env, "FORCE_COLOR": "1", "COLUMNS": "120"},
        stdout=open(out.parent / f"{out.name}.stdout", "wb"), stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """The log, the uninterrupted run's folder, and the environment (the session's ingest cache)."""
    work = tmp_path_factory.mktemp("cluster-ctrl-c")
    env = {**os.environ, "KVERN_INGEST_CACHE": str(tmp_path_factory.getbasetemp() / "ingest-cache")}
    log = hash_id_log(work / "big.jsonl")
    run = cluster(log, work / "full", env, 1)  # also warms the ingest and numba caches
    err = run.communicate()[1]
    assert run.returncode == 0, err.decode(errors="replace")
    return log, work / "full", env


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_keeps_the_finished_settings(whole: tuple[Path, Path, dict[str, str]], tmp_path: Path,
                                            jobs: int) -> None:
    log, full_dir, env = whole
    # The bar counts settings; with --jobs the fleet-wide reference caches (one per replica
    # count) run first as tasks of their own and count too.
    tasks = SETTINGS + (len(REPLICAS) if jobs > 1 else 0)
    # Two settings finished first in plan order: with two workers, tasks start in plan order and
    # finish in any, so one earlier than the last finished may still run: wait for a third.
    wait_for = tasks - SETTINGS + (2 if jobs == 1 else 3)
    cut_dir = tmp_path / "cut"
    run = cluster(log, cut_dir, env, jobs)
    assert run.stderr is not None
    count = re.compile(rb"(\d+)/" + str(tasks).encode() + rb"(?!\d)")
    buf, sent = b"", False
    while chunk := os.read(run.stderr.fileno(), 65536):
        buf = buf[-64:] + chunk
        if any(int(m.group(1)) >= wait_for for m in count.finditer(buf)):
            run.send_signal(signal.SIGINT)
            sent = True
            break
    err = run.communicate()[1].decode(errors="replace")
    assert sent, "the run ended before two settings were counted"
    assert run.returncode == 130, err
    assert "partial report written to" in err
    if jobs > 1:
        workers = subprocess.run(["ps", "--ppid", str(run.pid), "-o", "pid="], capture_output=True, text=True)
        assert workers.stdout.strip() == ""  # the pool's workers were ended with it

    doc = json.loads((cut_dir / "summary.json").read_text())
    full_doc = json.loads((full_dir / "summary.json").read_text())
    settings = doc["settings"]
    assert settings["partial"] is True
    not_run = settings["not_run"]
    rows = doc["summary"]
    done = len(rows)
    assert 2 <= done < SETTINGS and done + len(not_run) == SETTINGS
    assert "partial" not in full_doc["settings"]
    assert {k: v for k, v in settings.items() if k not in ("partial", "not_run")} == full_doc["settings"]
    # What finished is the plan's first settings (replica counts outer, routers inner), each
    # exactly as the whole run has it; what did not is named, in plan order.
    assert rows == full_doc["summary"][:done]
    assert [(u["replicas"], u["router"]) for u in not_run] == [
        (r["replicas"], r["router"]) for r in full_doc["summary"][done:]]
    assert all(u["offload"] == "none" and u["capacity"] == "100" for u in not_run)

    for name in ("summary.parquet", "cluster.parquet"):
        cut_t, full_t = pq.read_table(cut_dir / name), pq.read_table(full_dir / name)
        assert json.loads(cut_t.schema.metadata[PARTIAL_KEY]) == {"partial": True, "not_run": not_run}
        assert full_t.schema.metadata is None or PARTIAL_KEY not in full_t.schema.metadata
    cut_req = pq.read_table(cut_dir / "cluster.parquet")
    assert cut_req.num_rows == done * REQUESTS
    head = pq.read_table(full_dir / "cluster.parquet").slice(0, cut_req.num_rows)
    assert cut_req.replace_schema_metadata(None).equals(head.replace_schema_metadata(None))
    assert "PARTIAL" in (tmp_path / "cut.stdout").read_text()
    # Nothing half-written: no staging folder or temporary file is left, and the folder holds
    # the whole run's kinds of file (charts of what finished included), nothing else.
    assert not [p for p in tmp_path.rglob("*") if "tmp" in p.name.lower()]
    assert sorted(p.name for p in cut_dir.iterdir()) == sorted(p.name for p in full_dir.iterdir())
