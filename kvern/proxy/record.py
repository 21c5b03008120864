"""One exchange through the proxy, and the log line it becomes (docs/proxy.md, "Log format").

A line is ingest's proxy-wrapper shape, ``{"timestamp", "request": {...}, "response": {...}}``,
plus the proxy's own keys (``kvern_proxy`` marks the format version). The request body is
embedded as the client sent it: a JSON object is valid JSON on one line once its newlines
(which JSON only allows as whitespace) are spaces, so it is never re-serialized on the event
loop. What ``--content`` keeps:

- ``full``: the request body and the response (or the stream accumulated: text, usage, finish
  reasons);
- ``hashes``: no text; the prompt's length and chained block keys (written by the analytics
  worker, which tokenizes) — a hash-id trace for ``kvern ingest``;
- ``none``: metadata only (times, status, model, usage).

Every line, whatever the mode, has the values of the request's credential headers cut out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1
MARK = "kvern_proxy"
"""Top-level key of every proxy log line; its value is ``FORMAT_VERSION``."""
REDACTED = b"<redacted>"
SECRET_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "openai-api-key")
UNPARSED_TEXT_CHARS = 65536

# outcomes
OK = "ok"
CLIENT_GONE = "client_disconnected"
UPSTREAM_UNREACHABLE = "upstream_unreachable"
UPSTREAM_TIMEOUT = "upstream_timeout"
UPSTREAM_CUT = "upstream_cut"
UPSTREAM_BAD = "upstream_bad_response"
SHUTDOWN = "cancelled_at_shutdown"


@dataclass(slots=True)
class Exchange:
    """What the proxy saw of one completion request; times are epoch seconds."""

    request_id: str
    endpoint: str
    received: float
    body: bytes
    secrets: tuple[bytes, ...] = ()
    status: int = 0
    outcome: str = OK
    first_byte: float | None = None
    done: float | None = None
    overhead_s: float | None = None
    """Time the proxy itself added before the client's first byte (its time minus upstream's)."""
    response: dict[str, Any] | None = None
    response_text: str | None = None
    """A response body that is not JSON (an HTML error page, garbage), kept as text."""
    error: str | None = None
    seq: int = 0
    parsed: dict[str, Any] | None = field(default=None, repr=False)

    def parse(self) -> None:
        """Parse the body once, after the exchange (never before forwarding it)."""
        try:
            obj = json.loads(self.body.decode("utf-8"))  # embedded raw in a UTF-8 line: UTF-8 only
        except ValueError:
            return
        self.parsed = obj if isinstance(obj, dict) else None

    @property
    def model(self) -> str | None:
        m = self.parsed.get("model") if self.parsed else None
        return m if isinstance(m, str) else None

    @property
    def stream(self) -> bool:
        return bool(self.parsed and self.parsed.get("stream") is True)

    @property
    def served(self) -> bool:
        """The upstream took the request (2xx): its prompt reached the server's cache."""
        return self.parsed is not None and 200 <= self.status < 300

    def head(self) -> dict[str, Any]:
        """Everything but the bodies: what every content mode keeps."""
        def ms(t: float | None) -> float | None:
            return None if t is None else round((t - self.received) * 1000.0, 3)

        return {
            MARK: FORMAT_VERSION, "seq": self.seq, "request_id": self.request_id, "timestamp": self.received,
            "endpoint": self.endpoint, "model": self.model, "stream": self.stream, "status": self.status,
            "outcome": self.outcome, "served": self.served, "unparsed": self.parsed is None,
            "times": {"received": self.received, "first_byte": self.first_byte, "done": self.done},
            "ttft_ms": ms(self.first_byte), "e2e_ms": ms(self.done),
            "overhead_ms": None if self.overhead_s is None else round(self.overhead_s * 1000.0, 4),
            "error": self.error,
        }

    def full_line(self) -> bytes:
        """The ``--content full`` line (also what the analytics worker is sent, in every mode)."""
        head = self.head()
        head["response"] = self.response
        if self.response_text is not None:
            head["response_text"] = self.response_text[:UNPARSED_TEXT_CHARS]
        if self.parsed is None:
            head["request_text"] = self.body[:UNPARSED_TEXT_CHARS].decode("utf-8", "replace")
            return self._scrub(_dumps(head))
        body = self.body.replace(b"\r", b" ").replace(b"\n", b" ")
        return self._scrub(_dumps(head)[:-2] + b', "request": ' + body + b"}\n")

    def meta_line(self) -> bytes:
        """The ``--content none`` line: no text, only sizes, usage and finish reasons."""
        head = self.head()
        head["content"] = "none"
        head["request_bytes"] = len(self.body)
        resp = self.response or {}
        head["usage"] = resp.get("usage")
        head["finish_reasons"] = [c.get("finish_reason") for c in resp.get("choices") or ()
                                  if isinstance(c, dict)]
        return self._scrub(_dumps(head))

    def _scrub(self, line: bytes) -> bytes:
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        return line


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8") + b"\n"


def secrets_of(headers: Any) -> tuple[bytes, ...]:
    """The credential values of a request's headers (and their bearer tokens), longest first."""
    found: set[bytes] = set()
    for name in SECRET_HEADERS:
        for value in headers.getall(name, ()):
            value = value.strip()
            token = value.split(None, 1)[1].strip() if " " in value else value
            for v in (value, token):
                if len(v) >= 8:
                    found.add(v.encode("utf-8", "replace"))
                    found.add(json.dumps(v)[1:-1].encode("utf-8", "replace"))
    return tuple(sorted(found, key=len, reverse=True))
