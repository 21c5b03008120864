"""A real Ray cluster on this machine for the tests: a head and a second node, each its own
``ray start`` on free ports, stopped by process group (never ``ray stop``, which would end every
Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 90


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_ports() -> list[str]:
    nm, om, agent_grpc, agent_http, metrics, env_agent, lo = free_ports(7)
    lo = max(lo, 20000)
    return ["--node-manager-port", str(nm), "--object-manager-port", str(om),
            "--dashboard-agent-grpc-port", str(agent_grpc), "--dashboard-agent-listen-port", str(agent_http),
            "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(env_agent),
            "--min-worker-port", str(lo), "--max-worker-port", str(lo + 200)]


@dataclass
class Cluster:
    address: str
    temp_dir: Path
    groups: list[int] = field(default_factory=list)
    """Process groups of the two ``ray start`` sessions: every Ray process of this cluster."""

    def stop(self) -> None:
        """End every process of the cluster: the two sessions' groups, then any worker (a worker
        leads its own group): titled ones by their parent raylet, starting ones by their temp dir."""
        for pid in workers(self):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pgid in self.groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, sig)
            if sig == signal.SIGTERM:
                time.sleep(1.0)
        for _ in range(3):
            for pid in self._own_processes():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)

    def _own_processes(self) -> list[int]:
        mark = f"--temp-dir={self.temp_dir}".encode()
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if mark in (proc / "cmdline").read_bytes():
                        found.append(int(proc.name))
        return found


def _ray_start(args: list[str], log: Path) -> int:
    ray_bin = Path(sys.executable).with_name("ray")
    # A loopback-only test cluster: no token authentication, whatever ~/.ray holds.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    with open(log, "ab") as f:
        proc = subprocess.Popen([str(ray_bin), "start", *args, "--num-cpus", "1",
                                 "--object-store-memory", str(100 * 2**20), "--disable-usage-stats"],
                                stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        code = proc.wait(START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        code = None
    if code != 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError(f"ray start failed ({code}): {log.read_text()[-2000:]}")
    return proc.pid  # the session's process group id: its daemons keep it


@contextlib.contextmanager
def local_cluster(attempts: int = 3) -> Iterator[Cluster]:
    """A head and a second node on fresh free ports. A start that fails (a port taken between
    choosing and binding it, on a busy machine) is retried on other ports."""
    for attempt in range(attempts):
        temp = Path(tempfile.mkdtemp(prefix="kr", dir="/tmp"))  # short: Ray's socket paths must fit
        (port, dash, client) = free_ports(3)
        cluster = Cluster(f"127.0.0.1:{port}", temp)
        try:
            cluster.groups.append(_ray_start(
                ["--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard=false",
                 "--dashboard-port", str(dash), "--ray-client-server-port", str(client), "--temp-dir",
                 str(temp), *_node_ports()], temp / "head.log"))
            cluster.groups.append(_ray_start(
                ["--address", cluster.address, "--node-ip-address", "127.0.0.1", *_node_ports()],
                temp / "worker.log"))
        except RuntimeError:
            cluster.stop()
            if attempt == attempts - 1:
                raise
            continue
        try:
            yield cluster
        finally:
            cluster.stop()
        return


def workers(cluster: Cluster) -> list[int]:
    """PIDs of this cluster's worker processes, idle or busy (titled ``ray::IDLE``/``ray::<task>``).

    A worker leads its own process group; its parent, the node's raylet, is in the cluster's."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if not cmd.startswith((b"ray::IDLE", TASK_TITLE)):
                continue
            ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            if os.getpgid(ppid) in cluster.groups:
                found.append(int(proc.name))
        except (OSError, ProcessLookupError, ValueError, IndexError):
            continue
    return found


TASK_TITLE = b"ray::_ray_call"
"""A worker's title while it runs an executor task."""


def is_busy(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(TASK_TITLE)
    except OSError:
        return False
