"""Fixtures for the proxy tests: real processes on 127.0.0.1 and free ports, stopped at the end.

``proxy(upstream, ...)`` starts ``kvern proxy`` as its own process (real signals, real exit
status); ``fake_upstream()`` the small aiohttp server of ``fake_upstream.py``; the llama-server
fixtures are the live tests' (``tests/live``), skipped without the binary.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))

from llama_proc import Server, free_port, llama_server_binary, start_server
from proxy_helpers import HERE, Proc, env, wait_http
from tiny_gguf import write_tiny_llama

TEST_CONFIG = """
proxy:
  read_timeout_s: {read_timeout}
  connect_timeout_s: 2
  grace_s: {grace}
  fsync_s: 0.2
  queue_mb: {queue_mb}
"""


@pytest.fixture
def fake_upstream(tmp_path: Path) -> Iterator[Callable[[], Proc]]:
    started: list[Proc] = []

    def start() -> Proc:
        port = free_port()
        log = tmp_path / f"upstream{len(started)}.log"
        with open(log, "wb") as sink:
            proc = subprocess.Popen([sys.executable, str(HERE / "fake_upstream.py"), str(port)],
                                    stdout=sink, stderr=subprocess.STDOUT, env=env())
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
            proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env(), cwd=folder)
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
