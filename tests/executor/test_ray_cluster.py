"""Against a real Ray cluster: a head and a second node started here on free ports, used through
``--ray-address``, stopped afterwards even on failure. Ingest, sweep, compare and cluster on Ray
give the local files byte for byte, also when a worker is killed in the middle of a job."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'kvern[ray]' (in the dev extra)")

from typer.testing import CliRunner  # noqa: E402

from kvern.cli import app  # noqa: E402
from kvern.infra.config import Config  # noqa: E402
from kvern.infra.console import Output  # noqa: E402
from kvern.ingest.pipeline import ingest  # noqa: E402
from kvern.ingest.stream import with_block_ids  # noqa: E402
from kvern.ingest.trace import read_trace, write_trace  # noqa: E402
from tests.executor.ray_cluster import Cluster, is_busy, local_cluster, workers  # noqa: E402
from tests.trace_paths import CHAT_SAMPLE  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with local_cluster() as c:
        try:
            yield c
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ray")
    (d / "config.yaml").write_text("executor:\n  shard_mb: 0.02\n")  # ~20 KB shards: many per log
    return d


def _log(folder: Path, n: int) -> Path:
    log = folder / f"chat{n}.jsonl"
    if not log.exists():
        log.write_text("\n".join(CHAT_SAMPLE.read_text(encoding="utf-8").splitlines()[:n]) + "\n")
    return log


def _local_trace(log: Path, out: Path) -> bytes:
    """What ``kvern ingest LOG -o OUT`` writes locally (interned block ids included)."""
    write_trace(with_block_ids(ingest(log, Config())), out)
    return out.read_bytes()


def _kvern(*args: str) -> None:
    res = CliRunner().invoke(app, [*args, "--quiet"])
    assert res.exit_code == 0, res.output


def test_ingest_on_ray_equals_local(cluster: Cluster, work: Path) -> None:
    log = _log(work, 80)
    _kvern("ingest", str(log), "--config", str(work / "config.yaml"), "--no-cache", "--executor", "ray",
           "--ray-address", cluster.address, "-o", str(work / "ray.parquet"))
    assert (work / "ray.parquet").read_bytes() == _local_trace(log, work / "local.parquet")


def test_sweep_compare_and_cluster_on_ray_equal_local(cluster: Cluster, work: Path) -> None:
    trace = work / "trace.parquet"
    if not trace.exists():
        _local_trace(_log(work, 80), trace)
    runs = {"sweep": ["--policies", "lru,belady", "--points", "3"],
            "compare": ["--policies", "lru,belady", "--capacity", "50,400"],
            "cluster": ["--replicas", "1,2", "--router", "round-robin,session", "--capacity", "200"]}
    for command, extra in runs.items():
        local, remote = work / "local" / command, work / "ray" / command  # report.html names its folder
        _kvern(command, str(trace), "--profile", "vllm", *extra, "-o", str(local),
               *(["--jobs", "1"] if command == "sweep" else []))
        _kvern(command, str(trace), "--profile", "vllm", *extra, "-o", str(remote), "--executor", "ray",
               "--ray-address", cluster.address)
        names = sorted(p.name for p in local.iterdir())
        assert names == sorted(p.name for p in remote.iterdir())
        for name in names:
            assert (local / name).read_bytes() == (remote / name).read_bytes(), f"{command}: {name} differs"


def test_a_worker_killed_mid_ingest_is_retried_and_the_trace_is_unchanged(cluster: Cluster,
                                                                          work: Path) -> None:
    log = _log(work, 200)
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:  # the first worker seen running a task is killed
        while not stop.is_set() and not killed:
            pids, until = workers(cluster), time.monotonic() + 0.3
            while pids and not killed and time.monotonic() < until:
                for pid in pids:
                    if is_busy(pid):
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        break

    watcher = threading.Thread(target=killer, daemon=True)
    watcher.start()
    try:
        _kvern("ingest", str(log), "--config", str(work / "config.yaml"), "--no-cache", "--executor", "ray",
               "--ray-address", cluster.address, "-o", str(work / "killed.parquet"))
    finally:
        stop.set()
        watcher.join()
    assert killed, "no worker was seen running a task"
    assert (work / "killed.parquet").read_bytes() == _local_trace(log, work / "local160.parquet")


class _CtrlCAfter(Output):
    """Quiet; Ctrl-C (KeyboardInterrupt) once ``n`` tasks have finished."""

    def __init__(self, n: int) -> None:
        super().__init__(quiet=True)
        self.left = n

    def progress(self, description: str, total: float | None) -> Any:  # type: ignore[override]
        def advance(k: float) -> None:
            self.left -= int(k)
            if self.left <= 0:
                raise KeyboardInterrupt

        return contextlib.nullcontext(advance)


def test_ctrl_c_cancels_the_ray_tasks_and_keeps_the_finished_points(cluster: Cluster, work: Path) -> None:
    from kvern.infra.executor import RayExecutor
    from kvern.sim.sweep import SweepInterrupted, run_sweep

    trace = read_trace(work / "trace.parquet") if (work / "trace.parquet").exists() else ingest(
        _log(work, 80), Config())
    kw: dict[str, Any] = {"policies": "lru,belady", "profile": "vllm", "points": 6}
    full = run_sweep(trace, Config(), jobs=1, **kw)
    with pytest.raises(SweepInterrupted) as info:
        run_sweep(trace, Config(), executor=RayExecutor(cluster.address), out=_CtrlCAfter(3), **kw)
    cut = info.value.result
    assert cut.partial and cut.settings["not_run"]
    kept = [p for m in cut.models for p in m.points]
    assert len(kept) + sum(m.achievable_tokens is not None for m in cut.models) == 3  # tasks finished
    assert set(kept) <= {p for m in full.models for p in m.points}  # what finished is what a full run finds
    deadline = time.monotonic() + 10
    while any(is_busy(p) for p in workers(cluster)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(is_busy(p) for p in workers(cluster)), "a cancelled task still runs"
