"""Read a streamed (SSE) completion as it passes, to record what the client received.

The proxy writes each upstream chunk to the client first and feeds a copy here afterwards, so
parsing never delays a byte. Events are split on lines (``data: {...}``); a line cut between
chunks waits for its end. What is kept is what a log needs: the text (chat ``delta.content``
or completions ``text``, per choice), finish reasons, the last ``usage`` and llama.cpp's
``timings``. A chunk that is not JSON is counted, never raised: the client got it unchanged.
"""

from __future__ import annotations

import json
import zlib
from typing import Any


class StreamAccumulator:
    def __init__(self, encoding: str | None = None) -> None:
        self._pending = b""
        # gzip or deflate bodies (rare for SSE) are decoded for the record only.
        self._inflate = zlib.decompressobj(47) if encoding in ("gzip", "deflate") else None
        self.undecodable = encoding not in (None, "", "identity", "gzip", "deflate")
        self.texts: dict[int, list[str]] = {}
        self.finish: dict[int, str] = {}
        self.roles: dict[int, str] = {}
        self.tool_calls = 0
        self.usage: dict[str, Any] | None = None
        self.timings: dict[str, Any] | None = None
        self.id: str | None = None
        self.model: str | None = None
        self.object: str | None = None
        self.error: Any = None
        self.events = 0
        self.bad_events = 0
        self.done = False

    def feed(self, chunk: bytes) -> None:
        if self.undecodable:
            return
        if self._inflate is not None:
            try:
                chunk = self._inflate.decompress(chunk)
            except zlib.error:
                self.undecodable = True
                return
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        for line in lines:
            self._line(line)

    def close(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = b""

    def _line(self, raw: bytes) -> None:
        if not raw.startswith(b"data:"):
            return
        data = raw[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return
        try:
            event = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            self.bad_events += 1
            return
        if not isinstance(event, dict):
            self.bad_events += 1
            return
        self.events += 1
        if "error" in event:
            self.error = event["error"]
        self.id = self.id or _str(event.get("id"))
        self.model = self.model or _str(event.get("model"))
        self.object = self.object or _str(event.get("object"))
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        if isinstance(event.get("timings"), dict):
            self.timings = event["timings"]
        for choice in event.get("choices") or ():
            if isinstance(choice, dict):
                self._choice(choice)

    def _choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        index = index if isinstance(index, int) else 0
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if isinstance(delta, dict):
            if isinstance(delta.get("role"), str):
                self.roles[index] = delta["role"]
            if delta.get("tool_calls"):
                self.tool_calls += 1
        if isinstance(text, str) and text:
            self.texts.setdefault(index, []).append(text)
        if isinstance(choice.get("finish_reason"), str):
            self.finish[index] = choice["finish_reason"]

    def response(self, chat: bool) -> dict[str, Any]:
        """The stream as one response object, shaped like the non-streamed answer."""
        indices = sorted(set(self.texts) | set(self.finish)) or [0]
        choices = []
        for i in indices:
            text = "".join(self.texts.get(i, ()))
            body: dict[str, Any] = {"index": i, "finish_reason": self.finish.get(i)}
            if chat:
                body["message"] = {"role": self.roles.get(i, "assistant"), "content": text}
            else:
                body["text"] = text
            choices.append(body)
        out: dict[str, Any] = {"id": self.id, "object": self.object, "model": self.model, "choices": choices,
                               "usage": self.usage, "stream_done": self.done}
        if self.timings is not None:
            out["timings"] = self.timings
        if self.error is not None:
            out["error"] = self.error
        if self.tool_calls:
            out["tool_call_chunks"] = self.tool_calls
        if self.bad_events:
            out["unparsed_events"] = self.bad_events
        if self.undecodable:
            out["undecodable"] = True
        return out


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None
