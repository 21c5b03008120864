"""Helpers shared by the proxy tests: processes, a request body, the proxy's records, and every
byte the proxy wrote."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import zstandard

from kvern.ingest.source import iter_lines, log_files

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

SECRET = "sk-kvern-test-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}"}


def chat(model: str = "fast", stream: bool = False, **extra: object) -> dict:
    return {"model": model, "stream": stream, "max_tokens": 4,
            "messages": [{"role": "system", "content": "You are terse."},
                         {"role": "user", "content": "Say something about caches."}], **extra}


def records(folder: Path) -> list[dict]:
    out = []
    for f in log_files(folder):
        out += [item.obj for item in iter_lines(f)]
    return out


def wait_records(folder: Path, n: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            recs = records(folder)
        except Exception:
            recs = []
        if len(recs) >= n:
            return recs
        time.sleep(0.05)
    raise AssertionError(f"expected {n} records in {folder}")


def all_bytes(folder: Path) -> bytes:
    """Every file the proxy wrote, decompressed where compressed."""
    blob = b""
    for p in folder.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            if data[:4] == b"\x28\xb5\x2f\xfd":
                data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            blob += data
    return blob


def env() -> dict[str, str]:
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
