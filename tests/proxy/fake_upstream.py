"""A small OpenAI-style server (its own process) for the faults a real llama-server cannot be
made to show on demand. The request's ``model`` picks the behaviour:

- ``fast`` (default): answers at once; streamed: ``chunks`` events, then usage and ``[DONE]``;
- ``slow``: waits ``slow_s`` before answering;
- ``garbage``: writes bytes that are not HTTP and closes;
- ``die``: streams two events, then the process exits (an upstream killed mid-stream);
- ``hang``: streams one event, then waits; a client that leaves is noticed and written to
  ``GET /_events``.

``GET /_seen`` returns the headers of the last request. Run: ``python fake_upstream.py PORT``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from aiohttp import web

EVENTS: list[str] = []
SEEN: dict[str, str] = {}


def _chunk(i: int, text: str, chat: bool) -> bytes:
    choice = ({"index": 0, "delta": {"content": text}, "finish_reason": None} if chat
              else {"index": 0, "text": text, "finish_reason": None})
    event = {"id": "fake-1", "object": "chunk", "model": "m", "choices": [choice]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


async def completions(request: web.Request) -> web.StreamResponse:
    SEEN.clear()
    SEEN.update(request.headers)
    body = await request.json()
    model = body.get("model", "fast")
    chat = request.path.endswith("/chat/completions")
    n = int(body.get("max_tokens") or 4)
    if model == "slow":
        await asyncio.sleep(float(body.get("slow_s", 5)))
    if model == "garbage":
        assert request.transport is not None
        request.transport.write(b"THIS IS NOT HTTP\r\n\r\n\x00\x01")
        request.transport.close()
        await asyncio.sleep(0.1)
        return web.Response()
    usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n,
             "prompt_tokens_details": {"cached_tokens": 3}}
    if not body.get("stream"):
        text = "x" * n
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                  if chat else {"index": 0, "text": text, "finish_reason": "length"})
        return web.json_response({"id": "fake-1", "object": "completion", "model": model,
                                  "choices": [choice], "usage": usage})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    try:
        for i in range(n):
            await resp.write(_chunk(i, f"t{i} ", chat))
            if model == "die" and i == 1:
                os._exit(3)
            if model == "hang":
                await asyncio.sleep(3600)
            delay = float(body.get("chunk_delay_s", 0))
            if delay:
                await asyncio.sleep(delay)
        end = {"id": "fake-1", "object": "chunk", "model": model,
               "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}] if chat else
               [{"index": 0, "text": "", "finish_reason": "length"}], "usage": usage}
        await resp.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")
        await resp.write_eof()
    except (asyncio.CancelledError, ConnectionResetError):
        EVENTS.append("client left")
        raise
    return resp


async def models(_: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "fast", "object": "model"}]})


async def seen(_: web.Request) -> web.Response:
    return web.json_response(SEEN)


async def events(_: web.Request) -> web.Response:
    return web.json_response(EVENTS)


def main() -> None:
    app = web.Application()
    app.add_routes([web.post("/v1/chat/completions", completions), web.post("/v1/completions", completions),
                    web.get("/v1/models", models), web.get("/_seen", seen), web.get("/_events", events)])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, handler_cancellation=True,
                access_log=None)


if __name__ == "__main__":
    main()
