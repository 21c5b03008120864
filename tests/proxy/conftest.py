"""Fixtures for the proxy tests: real processes on 127.0.0.1 and free ports, stopped at the end.

``proxy(upstream, ...)`` starts ``kvern proxy`` as its own process (real signals, real exit
status); ``fake_upstream()`` the small aiohttp server of ``fake_upstream.py``; the llama-server
fixtures are the live tests' (``tests/live``), skipped without the binary.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests" / "live"))

from llama_proc import Server, free_port, llama_server_binary, start_server  # noqa: E402
from tiny_gguf import write_tiny_llama  # noqa: E402

TEST_CONFIG = """
proxy:
  read_timeout_s: {read_timeout}
  connect_timeout_s: 2
  grace_s: {grace}
  fsync_s: 0.2
  queue_mb: {queue_mb}
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1.0)
            return
        time.sleep(0.05)
    raise RuntimeError(f"{url} never answered:\n{log.read_text()[-3000:]}")


@dataclass
class Proc:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    folder: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=5).json()

    def wait_analyzed(self, n: int, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = self.health()
            if h["analytics"]["analyzed"] >= n:
                return h
            time.sleep(0.1)
        raise AssertionError(f"analytics stuck: {self.health()}")


@pytest.fixture
def fake_upstream(tmp_path: Path) -> Iterator[Callable[[], Proc]]:
    started: list[Proc] = []

    def start() -> Proc:
        port = free_port()
        log = tmp_path / f"upstream{len(started)}.log"
        with open(log, "wb") as sink:
            proc = subprocess.Popen([sys.executable, str(HERE / "fake_upstream.py"), str(port)],
                                    stdout=sink, stderr=subprocess.STDOUT, env=_env())
        p = Proc(f"http://127.0.0.1:{port}", port, proc, log, tmp_path)
        started.append(p)
        wait_http(p.url + "/v1/models", proc, log)
        return p

    yield start
    for p in started:
        p.stop(signal.SIGKILL)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``proxy(upstream_url, *flags, read_timeout=5, grace=10, queue_mb=64)`` starts ``kvern proxy``."""
    started: list[Proc] = []

    def start(upstream: str, *flags: str, read_timeout: float = 5.0, grace: float = 10.0,
              queue_mb: float = 64.0) -> Proc:
        n = len(started)
        folder = tmp_path / f"proxy{n}"
        folder.mkdir()
        config = folder / "config.yaml"
        config.write_text(TEST_CONFIG.format(read_timeout=read_timeout, grace=grace, queue_mb=queue_mb))
        port = free_port()
        log = tmp_path / f"proxy{n}.stderr"
        cmd = [sys.executable, "-m", "kvern", "proxy", "--upstream", upstream, "--port", str(port),
               "--log-dir", str(folder / "logs"), "--config", str(config), *flags]
        with open(log, "wb") as sink:
            proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=_env(), cwd=folder)
        p = Proc(f"http://127.0.0.1:{port}", port, proc, log, folder / "logs")
        started.append(p)
        wait_http(p.url + "/health", proc, log)
        return p

    yield start
    for p in started:
        p.stop(signal.SIGKILL)


# -- the live tests' llama-server ---------------------------------------------------------------
@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    path = llama_server_binary()
    if path is None:
        pytest.skip("no llama-server: set KVERN_LLAMA_SERVER or run scripts/build_llama_server.sh")
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kvern.ingest.tokenizer import default_tokenizer_dir

    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny.gguf", default_tokenizer_dir())


@pytest.fixture
def llama_server(llama_server_bin: Path, tiny_gguf: Path, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(**kwargs: object) -> Server:
        server = start_server(llama_server_bin, tiny_gguf, tmp_path / f"llama{len(started)}.log",
                              **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
