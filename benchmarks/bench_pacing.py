"""Pacing accuracy of live replay: how late is each request sent against its schedule?

Runs the real replay loop (``kvern.live.loop.replay``) at a fixed rate against a fast local
OpenAI-style endpoint that answers every request at once with a three-event stream, in its
own process so that it does not share the replayer's event loop. Reports the send lag
(actual − scheduled send time) percentiles in milliseconds, and beside them the floor: the
same pacing loop sending nothing, which shows what the machine's scheduler allows.
Target: p99 ≤ 2 ms at 200 req/s.

    .venv/bin/python benchmarks/bench_pacing.py --rate 200 --requests 4000 [--process poisson]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np

from kvern.live.client import LiveRequest, RetryPolicy
from kvern.live.loop import LiveSettings, replay
from kvern.live.pacing import Pacing, schedule, sleep_until
from kvern.live.sink import LiveSink

_EVENTS = (
    b'data: {"choices":[{"index":0,"text":"x","finish_reason":null}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1,'
    b'"prompt_tokens_details":{"cached_tokens":0}}}\n\n'
    b"data: [DONE]\n\n"
)
_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "
             + str(len(_EVENTS)).encode() + b"\r\n\r\n" + _EVENTS)


def _serve(port_out: multiprocessing.connection.Connection) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(_RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
        port_out.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def floor(rate: float, n: int) -> float:
    """p99 lateness (ms) of the bare pacing loop with nothing sent: what the machine allows."""
    async def loop() -> list[float]:
        t0, lags = time.perf_counter(), []
        for i in range(n):
            target = t0 + i / rate
            await sleep_until(target)
            lags.append((time.perf_counter() - target) * 1000.0)
        return lags

    return round(float(np.percentile(asyncio.run(loop()), 99)), 3)


def run(rate: float, n: int, process: str) -> dict[str, float]:
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    port = parent.recv()
    try:
        requests = [LiveRequest(row=i, request_id=str(i), model="m", session_id=None, path="/v1/completions",
                                body={"model": "m", "prompt": [1, 2, 3, 4], "max_tokens": 1, "stream": True},
                                prompt_tokens=4, max_tokens=1) for i in range(n)]
        pacing = Pacing(process, rate=rate)  # type: ignore[arg-type]
        offsets = schedule(pacing, np.zeros(n))
        settings = LiveSettings(backend=f"http://127.0.0.1:{port}", pacing=pacing,
                                retry=RetryPolicy(timeout_s=10.0, retries=0))
        with tempfile.TemporaryDirectory() as tmp:
            sink = LiveSink(Path(tmp) / "live.parquet", {}, flush_every_s=1.0)
            replay(requests, offsets, settings, sink)
    finally:
        server.kill()
    live = sink.table()
    sched = live.column("scheduled_s").to_numpy()
    sent = live.column("sent_s").to_numpy()
    lag_ms = (sent - sched) * 1000.0
    ok = sum(live.column("ok").to_pylist())
    return {"rate": rate, "process": process, "requests": n, "ok": ok,
            "lag_p50_ms": round(float(np.percentile(lag_ms, 50)), 3),
            "lag_p99_ms": round(float(np.percentile(lag_ms, 99)), 3),
            "lag_max_ms": round(float(lag_ms.max()), 3),
            "achieved_rate": round(n / float(sent.max() - sent.min()) if n > 1 else 0.0, 1)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--process", choices=["constant", "poisson"], default="constant")
    args = ap.parse_args()
    result = run(args.rate, args.requests, args.process)
    result["floor_p99_ms"] = floor(args.rate, args.requests)
    print(json.dumps(result))
