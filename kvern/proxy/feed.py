"""The proxy's side of the analytics queue: a bounded pipe to the worker process.

``offer`` never waits: a frame goes into the pipe's write buffer (the event loop sends it
when the pipe has room). The buffer is the queue, bounded by ``queue_bytes``: past it a frame
is dropped and counted, and the worker, seeing the gap in sequence numbers (or told by
``mark`` how many records exist), reads the missing records back from the log. With
``--content hashes`` the worker writes the log itself, so
nothing is dropped there: the buffer grows instead (``/health`` shows it). A worker that dies
is reported, never restarted behind the user's back; requests go on unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import sys
from typing import IO, Any

from kvern.proxy.settings import ProxySettings

HEADER = struct.Struct("<I")
"""A frame is its length (4 bytes, little-endian) then its bytes."""


def read_frame(stream: IO[bytes]) -> bytes | None:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (n,) = HEADER.unpack(head)
    data = stream.read(n)
    return data if len(data) == n else None


class AnalyticsFeed:
    def __init__(self, settings: ProxySettings, config: dict[str, Any], run_id: str) -> None:
        self.settings = settings
        self.config = config
        self.run_id = run_id
        self.proc: asyncio.subprocess.Process | None = None
        self.sent = 0
        self.dropped = 0
        self.lossless = settings.content == "hashes"

    async def start(self) -> None:
        env = dict(os.environ)
        env.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kvern.proxy.worker", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL, env=env, start_new_session=True)
        self._send(json.dumps({"settings": self.settings.to_json(), "config": self.config,
                               "run_id": self.run_id}).encode())

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def buffered(self) -> int:
        stdin = self.proc.stdin if self.proc is not None else None
        return stdin.transport.get_write_buffer_size() if stdin is not None else 0

    def offer(self, file: str, line: bytes) -> bool:
        """Hand one record to the worker; False when it was dropped (queue full or worker gone)."""
        if not self.alive or (not self.lossless and self.buffered > self.settings.queue_bytes):
            self.dropped += 1
            return False
        self._send(file.encode() + b"\n" + line)
        self.sent += 1
        return True

    def mark(self, recorded: int) -> None:
        """Tell the worker how many records exist, so it catches up on dropped ones (sent only
        when the pipe has room: the frames before it have all arrived by the time it does)."""
        if self.alive and self.buffered <= self.settings.queue_bytes:
            self._send(b"#" + str(recorded).encode())

    def _send(self, payload: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(HEADER.pack(len(payload)) + payload)
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            self.dropped += 1

    async def close(self, recorded: int, timeout: float) -> int | None:
        """End the stream; wait for the worker to analyze all ``recorded`` records, flush and exit."""
        if self.proc is None:
            return None
        stdin = self.proc.stdin
        if stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
                await asyncio.wait_for(stdin.drain(), timeout)
                if self.alive:
                    self._send(b"#" + str(recorded).encode())
                await asyncio.wait_for(stdin.drain(), timeout)
            stdin.close()
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()
