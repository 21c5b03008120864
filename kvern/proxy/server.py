"""Forwarding: every request goes upstream as it came, and its answer comes back as it arrives.

Headers pass unchanged (``Authorization`` included) but for the hop-by-hop ones and ``Host``;
the body is forwarded as bytes, never parsed first. The answer is streamed to the client chunk
by chunk as the upstream sends it (an SSE stream is never buffered), status and headers
unchanged, compression included. Completions (``POST /v1/chat/completions`` and
``/v1/completions``) are also recorded: the stream is read on the side (``sse``) and the
exchange handed to ``tap`` once the client has its last byte.

When the proxy itself must answer: upstream unreachable → 502, no answer within
``read_timeout_s`` → 504, a malformed answer → 502, each with an OpenAI-style error body. A
stream the upstream cuts or stalls is cut for the client too (as it would be directly). A
client that goes away cancels the upstream request: leaving the ``async with`` closes the
upstream connection, which is how vLLM, SGLang and llama-server learn to stop generating.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from time import perf_counter

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from kvern.proxy import record as rec
from kvern.proxy.record import Exchange, secrets_of
from kvern.proxy.settings import ProxySettings
from kvern.proxy.sse import StreamAccumulator

RECORDED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-connection", "te",
                        "trailer", "transfer-encoding", "upgrade", "host", "content-length", "expect"})
"""Headers that belong to one connection, not to the request (RFC 9110 §7.6.1), and those the
proxy's HTTP client sets itself for the bytes it sends (``Host``, ``Content-Length``); the body
has been read whole, so an ``Expect: 100-continue`` was already answered."""


def error_body(status: int, kind: str, message: str) -> bytes:
    return json.dumps({"error": {"message": f"kvern proxy: {message}", "type": kind, "param": None,
                                 "code": status}}).encode()


class Forwarder:
    def __init__(self, settings: ProxySettings, run_id: str, done: Callable[[Exchange], None]) -> None:
        self.upstream = settings.upstream
        self.public_upstream = settings.public_upstream
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout_s,
                                             sock_read=settings.read_timeout_s)
        self.run_id = run_id
        self.done = done
        self.session: aiohttp.ClientSession | None = None
        self.in_flight = 0
        self.stopping = False
        self._ids = itertools.count()

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            timeout=self.timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        t_in = perf_counter()
        received = time.time()
        self.in_flight += 1
        body = await request.read()
        recorded = request.method == "POST" and request.path in RECORDED_PATHS
        ex = Exchange(request_id=f"{self.run_id}-{next(self._ids)}", endpoint=request.path,
                      received=received, body=body,
                      secrets=secrets_of(request.headers)) if recorded else None
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
        url = URL(self.upstream + request.raw_path, encoded=True)
        assert self.session is not None
        resp: web.StreamResponse | None = None
        try:
            t_sent = perf_counter()
            async with self.session.request(request.method, url, data=body or None, headers=headers,
                                            allow_redirects=False) as up:
                resp = web.StreamResponse(status=up.status, reason=up.reason)
                for k, v in up.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        resp.headers.add(k, v)
                if up.content_length is not None:
                    resp.content_length = up.content_length
                encoding = up.headers.get("Content-Encoding")
                sse = up.content_type == "text/event-stream"
                acc = StreamAccumulator(encoding) if ex is not None and sse else None
                kept: list[bytes] | None = [] if ex is not None and not sse else None
                if ex is not None:
                    ex.status = up.status
                await resp.prepare(request)
                first = True
                try:
                    async for chunk in up.content.iter_any():
                        if first:
                            t_up_first = perf_counter()
                        await resp.write(chunk)
                        if first:
                            first = False
                            if ex is not None:
                                ex.first_byte = time.time()
                                ex.overhead_s = max(0.0, (perf_counter() - t_in) - (t_up_first - t_sent))
                        if acc is not None:
                            acc.feed(chunk)
                        elif kept is not None:
                            kept.append(chunk)
                except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
                        aiohttp.ClientOSError) as e:
                    _cut(request, ex, rec.UPSTREAM_CUT, f"upstream cut the response: {type(e).__name__}")
                    if ex is not None:
                        _fill(ex, acc, kept, encoding)
                    return resp
                except TimeoutError:
                    _cut(request, ex, rec.UPSTREAM_TIMEOUT, "upstream silent for longer than read_timeout_s")
                    if ex is not None:
                        _fill(ex, acc, kept, encoding)
                    return resp
                await resp.write_eof()
                if ex is not None:
                    if first:
                        ex.first_byte = time.time()
                    _fill(ex, acc, kept, encoding)
                return resp
        except ConnectionResetError:  # writing to a client that has gone
            if ex is not None:
                ex.outcome = rec.CLIENT_GONE
            return resp if resp is not None else web.Response(status=499)
        except asyncio.CancelledError:
            if ex is not None:
                ex.outcome = rec.SHUTDOWN if self.stopping else rec.CLIENT_GONE
            raise
        except aiohttp.ClientConnectorError as e:
            reason = e.os_error.strerror or type(e.os_error).__name__
            return self._fail(request, resp, ex, 502, rec.UPSTREAM_UNREACHABLE,
                              f"upstream {self.public_upstream} unreachable: {reason}")
        except TimeoutError:
            return self._fail(request, resp, ex, 504, rec.UPSTREAM_TIMEOUT,
                              f"upstream {self.public_upstream} did not answer in time")
        except aiohttp.ClientError as e:
            return self._fail(request, resp, ex, 502, rec.UPSTREAM_BAD,
                              f"upstream {self.public_upstream} sent no valid response ({type(e).__name__})")
        finally:
            self.in_flight -= 1
            if ex is not None:
                ex.done = time.time()
                asyncio.get_running_loop().call_soon(self.done, ex)

    def _fail(self, request: web.Request, resp: web.StreamResponse | None, ex: Exchange | None,
              status: int, kind: str, message: str) -> web.StreamResponse:
        if resp is not None and resp.prepared:  # the answer had begun: cut it, as the upstream did
            _cut(request, ex, kind, message)
            return resp
        if ex is not None:
            ex.status, ex.outcome, ex.error = status, kind, message
            ex.first_byte = time.time()
        return web.Response(status=status, body=error_body(status, kind, message),
                            content_type="application/json")


def _cut(request: web.Request, ex: Exchange | None, outcome: str, message: str) -> None:
    """End the client's connection without a proper end of body: it sees the cut, as it would directly."""
    if ex is not None:
        ex.outcome, ex.error = outcome, message
    if request.transport is not None:
        request.transport.abort()


def _fill(ex: Exchange, acc: StreamAccumulator | None, kept: list[bytes] | None,
          encoding: str | None) -> None:
    chat = ex.endpoint.endswith("/chat/completions")
    if acc is not None:
        acc.close()
        ex.response = acc.response(chat)
        return
    raw = b"".join(kept or ())
    if encoding in ("gzip", "deflate"):
        import zlib

        try:
            raw = zlib.decompress(raw, 47)
        except zlib.error:
            ex.response_text = "<undecodable compressed body>"
            return
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        ex.response = obj
    elif raw:
        ex.response_text = raw.decode("utf-8", "replace")
