"""Overhead of ``kvern proxy``: the same streamed requests sent directly and through a proxy.

A fast local OpenAI-style endpoint (its own process, raw asyncio) answers every request with an
8-event SSE stream: the first event at once, the rest 1 ms later. A load generator (this
process) sends streamed chat requests (a ~2 kB prompt) at a constant rate and times, per
request, the first and the last byte of the answer. Each proxy is measured side by side with
the endpoint itself: one schedule interleaves requests to both at the same rate, so what the
shared machine does to one it does to the other. The proxies:

- ``kvern``: ``kvern proxy`` as shipped (aiohttp server and client, full recording, analytics
  worker with the llamacpp prediction);
- ``aiohttp-bare``: a bare aiohttp pass-through (the same server/client stack, nothing recorded);
- ``fastapi-uvicorn``: a bare FastAPI-on-uvicorn pass-through with httpx streaming (KVern's stack).

Reported per target and rate: first-byte and last-byte latency p50/p99, through the proxy and
direct, and what the proxy added (its percentile minus direct's), CPU per request of the proxy
process (and of kvern's analytics worker, off the request path), and kvern's own measured
overhead (``/analytics``).

    .venv/bin/python -m benchmarks.bench_proxy --rates 50,200 --seconds 15 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np

_EVENT = (b'data: {"id":"b","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
          b'"delta":{"content":"tok "},"finish_reason":null}]}\n\n')
_LAST = (b'data: {"id":"b","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{},'
         b'"finish_reason":"length"}],"usage":{"prompt_tokens":500,"completion_tokens":8,'
         b'"prompt_tokens_details":{"cached_tokens":480}}}\n\ndata: [DONE]\n\n')
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
PROMPT = "You are the operations assistant of the platform team. " * 36  # ~2 kB


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


ENDPOINT = '''
import asyncio, sys
HEAD, FIRST, REST = {head!r}, {first!r}, {rest!r}
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            n = 0
            for line in head.split(b"\\r\\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":", 1)[1])
            await reader.readexactly(n)
            writer.write(HEAD + FIRST)
            await asyncio.sleep(0.001)
            writer.write(REST)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()
asyncio.run(main())
'''

AIOHTTP_BARE = '''
import sys
from aiohttp import ClientSession, TCPConnector, web
UP = sys.argv[2]
HOP = {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
async def start(app):
    app["s"] = ClientSession(connector=TCPConnector(limit=0), auto_decompress=False)
async def handle(request):
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    up_req = request.app["s"].request(request.method, UP + request.raw_path, data=body, headers=headers)
    async with up_req as up:
        resp = web.StreamResponse(status=up.status)
        for k, v in up.headers.items():
            if k.lower() not in HOP:
                resp.headers[k] = v
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp
app = web.Application()
app.on_startup.append(start)
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''

FASTAPI_BARE = '''
import sys
import httpx, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
UP = sys.argv[2]
HOP = {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
app = FastAPI()
client = httpx.AsyncClient(base_url=UP, timeout=None, limits=httpx.Limits(max_connections=None))
@app.api_route("/{path:path}", methods=["GET", "POST"])
async def proxy(path: str, request: Request):
    body = await request.body()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    req = client.build_request(request.method, "/" + path, content=body, headers=headers)
    up = await client.send(req, stream=True)
    out = {k: v for k, v in up.headers.items() if k.lower() not in HOP}
    return StreamingResponse(up.aiter_raw(), status_code=up.status_code, headers=out,
                             background=BackgroundTask(up.aclose))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def load(urls: list[str], rate: float, seconds: float,
               warmup_s: float) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Streamed requests at ``rate`` per second to each URL, interleaved in one schedule (so that a
    hiccup of the shared machine hits all of them alike); per URL, (first-byte, last-byte) seconds
    per request after the warm-up."""
    body = json.dumps({"model": "bench", "stream": True, "max_tokens": 8,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "system", "content": PROMPT},
                                    {"role": "user", "content": "status?"}]}).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-not-a-real-key"}
    n = int(rate * (seconds + warmup_s))
    first = np.full((len(urls), n), np.nan)
    last = np.full((len(urls), n), np.nan)
    failed = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(u: int, i: int) -> None:
            nonlocal failed
            t0 = time.perf_counter()
            try:
                async with session.post(urls[u] + "/v1/chat/completions", data=body, headers=headers) as r:
                    got_first = False
                    async for _ in r.content.iter_any():
                        if not got_first:
                            first[u, i] = time.perf_counter() - t0
                            got_first = True
                    last[u, i] = time.perf_counter() - t0
            except aiohttp.ClientError:
                failed += 1

        t_start = time.perf_counter() + 0.05
        tasks = []
        step = 1.0 / (rate * len(urls))
        for i in range(n):
            for u in range(len(urls)):
                delay = t_start + (i * len(urls) + u) * step - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(u, i)))
        await asyncio.gather(*tasks)
    skip = int(rate * warmup_s)
    return [(first[u, skip:], last[u, skip:]) for u in range(len(urls))], failed


def pct(a: np.ndarray, q: float) -> float:
    a = a[np.isfinite(a)]
    return round(float(np.percentile(a, q)) * 1000.0, 3)


def start_target(kind: str, upstream: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    if kind == "kvern":
        cfg = tmp / "config.yaml"
        cfg.write_text("proxy:\n  grace_s: 5\n")
        cmd = [sys.executable, "-m", "kvern", "proxy", "--upstream", upstream, "--port", str(port),
               "--log-dir", str(tmp / f"logs-{port}"), "--profile", "llamacpp", "--config", str(cfg)]
    else:
        script = tmp / f"{kind}.py"
        script.write_text(AIOHTTP_BARE if kind == "aiohttp-bare" else FASTAPI_BARE)
        cmd = [sys.executable, str(script), str(port), upstream]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    wait_port(port, proc)
    return proc, port


def measure(kind: str, upstream: str, rate: float, seconds: float, tmp: Path) -> dict[str, object]:
    """``kind`` and the endpoint directly, side by side in one interleaved schedule."""
    proc, port = start_target(kind, upstream, tmp)
    url = f"http://127.0.0.1:{port}"
    time.sleep(1.0)
    deadline = time.monotonic() + 60
    while kind == "kvern" and not httpx.get(url + "/health").json()["analytics"]["ready"]:
        assert time.monotonic() < deadline, "the analytics worker never got ready"
        time.sleep(0.2)
    try:
        asyncio.run(load([url, upstream], rate, 1.0, 0.0))  # warm connections, JIT and caches
        cpu0 = cpu_seconds(proc.pid)
        kids = children(proc.pid)
        kid0 = sum(cpu_seconds(k) for k in kids)
        (via, direct), failed = asyncio.run(load([url, upstream], rate, seconds, 0.5))
        cpu = cpu_seconds(proc.pid) - cpu0
        n = int(np.isfinite(via[1]).sum())
        result: dict[str, object] = {"target": kind, "rate": rate, "requests": n, "failed": failed}
        for name, (first, last) in (("direct", direct), ("proxy", via)):
            result[f"{name}_first_p50_ms"] = pct(first, 50)
            result[f"{name}_first_p99_ms"] = pct(first, 99)
            result[f"{name}_last_p50_ms"] = pct(last, 50)
            result[f"{name}_last_p99_ms"] = pct(last, 99)
        for k in ("first_p50_ms", "first_p99_ms", "last_p50_ms", "last_p99_ms"):
            added = float(result["proxy_" + k]) - float(result["direct_" + k])  # type: ignore[arg-type]
            result["added_" + k] = round(added, 3)
        result["cpu_ms_per_request"] = round(cpu / max(n, 1) * 1000.0, 3)
        if kind == "kvern":
            time.sleep(2.0)  # the worker catches up
            result["analytics_cpu_ms_per_request"] = round(
                (sum(cpu_seconds(k) for k in kids) - kid0) / max(n, 1) * 1000.0, 3)
            a = httpx.get(url + "/analytics", timeout=10).json()["run"]["overall"]
            result["self_overhead_p50_ms"] = a["overhead_p50_ms"]
            result["self_overhead_p99_ms"] = a["overhead_p99_ms"]
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="50,200")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--targets", default="kvern,aiohttp-bare,fastapi-uvicorn")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "endpoint.py"
        rest = b"".join(_chunk(_EVENT) for _ in range(6)) + _chunk(_LAST) + b"0\r\n\r\n"
        script.write_text(ENDPOINT.format(head=_HEAD, first=_chunk(_EVENT), rest=rest))
        endpoint = subprocess.Popen([sys.executable, str(script), str(port)])
        try:
            wait_port(port, endpoint)
            upstream = f"http://127.0.0.1:{port}"
            for _ in range(args.repeat):
                for rate in (float(r) for r in args.rates.split(",")):
                    for kind in args.targets.split(","):
                        print(json.dumps(measure(kind, upstream, rate, args.seconds, Path(tmp))), flush=True)
        finally:
            endpoint.kill()


if __name__ == "__main__":
    main()
