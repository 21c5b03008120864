"""A small HTTP proxy in front of the real llama-server that breaks chosen requests.

Faults are keyed by the 0-based index of the POST request through the proxy:

- ``"429"``/``"500"``: answer with that status (and ``Retry-After: 0`` for 429) without
  forwarding;
- ``"cut"``: forward, then close the connection after the first streamed event;
- ``"slow"``: hold the request ``slow_s`` seconds before forwarding it;
- ``"echo"``: answer 401 with the request's head and body echoed in the error (a hostile
  server: the ``Authorization`` header comes back, raw and JSON-escaped).

Every other request is forwarded byte for byte, one request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field


@dataclass
class FaultProxy:
    upstream_port: int
    faults: dict[int, str] = field(default_factory=dict)
    slow_s: float = 3.0
    port: int = 0
    posts: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.base_events.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the listener, cancel connections still being served, stop the thread."""
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def shutdown() -> None:
            server.close()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            fault = None
            if head.startswith(b"POST"):
                fault = self.faults.get(self.posts)
                self.posts += 1
            if fault in ("429", "500"):
                extra = b"Retry-After: 0\r\n" if fault == "429" else b""
                msg = b'{"error": "injected"}'
                writer.write(b"HTTP/1.1 " + fault.encode() + b" Injected\r\n"
                             + b"Content-Type: application/json\r\n" + extra
                             + b"Content-Length: " + str(len(msg)).encode()
                             + b"\r\nConnection: close\r\n\r\n" + msg)
                await writer.drain()
                return
            if fault == "echo":
                import json

                text = (head + body).decode("utf-8", "replace")
                msg = json.dumps({"error": {"message": f"Unauthorized: {text}", "raw": text}}).encode()
                writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                             + b"Content-Length: " + str(len(msg)).encode()
                             + b"\r\nConnection: close\r\n\r\n" + msg)
                await writer.drain()
                return
            if fault == "slow":
                await asyncio.sleep(self.slow_s)
            await self._forward(_close_after(head), body, writer, cut=fault == "cut")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _forward(self, head: bytes, body: bytes, writer: asyncio.StreamWriter, *, cut: bool) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            up_writer.write(head + body)
            await up_writer.drain()
            while True:
                data = await up_reader.read(65536)
                if not data:
                    return
                if cut and b"data:" in data:
                    writer.write(data[: data.index(b"data:") + 40])
                    await writer.drain()
                    writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()
        finally:
            up_writer.close()


def _close_after(head: bytes) -> bytes:
    """The request head with ``Connection: close``, so the upstream ends the response by closing."""
    lines = [ln for ln in head.split(b"\r\n") if ln and not ln.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"
