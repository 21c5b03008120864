"""Start and stop a real llama-server on 127.0.0.1 and a free port (used by the live tests).

The binary comes from ``KVERN_LLAMA_SERVER`` or the cache folder that
``scripts/build_llama_server.sh`` fills.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SERVED_MODEL = "tiny"


def llama_server_binary() -> Path | None:
    env = os.environ.get("KVERN_LLAMA_SERVER")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cached = base / "kvern" / "llama-server" / LLAMA_CPP_PYTHON_VERSION / "bin" / "llama-server"
    return cached if cached.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    slots: int

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(binary: Path, model: Path, log: Path, *, slots: int = 1, ctx_per_slot: int = 8192,
                 extra: tuple[str, ...] = ()) -> Server:
    port = free_port()
    cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
           "-np", str(slots), "-c", str(ctx_per_slot * slots), "-t", "1", "-b", "512",
           "--metrics", "--alias", SERVED_MODEL, *extra]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(f"http://127.0.0.1:{port}", port, proc, log, slots)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/health", timeout=1.0).status_code == 200:
                return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"llama-server did not become healthy:\n{log.read_text()[-3000:]}")


