"""One streamed request to an OpenAI-compatible server, with retries and back-off.

Each attempt streams (``stream: true`` with ``stream_options.include_usage``), so the time to
the first token is the time to the first chunk that carries a choice (servers send it with
the first generated token; its text may be held back, e.g. while a tool call is parsed), and the usage
(``prompt_tokens_details.cached_tokens``) arrives in the last chunk. llama.cpp also sends its
``timings`` (``cache_n``, ``prompt_n``) there. A failed attempt is retried when a retry can
help (no connection, a timeout, a cut stream, HTTP 408/429/5xx) after an exponential back-off
with jitter, or after the server's ``Retry-After`` when that is longer. Nothing here prints and
the API key never leaves the request headers.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from kvern.infra.jsondata import JsonProblem, parse_json
from kvern.infra.secrets import scrub

RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 10.0
ERROR_TEXT_CHARS = 300


@dataclass(frozen=True, slots=True)
class LiveRequest:
    """A request ready to send: which trace row it replays and the body to POST."""

    row: int
    request_id: str
    model: str
    session_id: str | None
    path: str
    """``/v1/chat/completions`` or ``/v1/completions``."""
    body: dict[str, Any]
    prompt_tokens: int
    """Prompt length in the trace (after kvern's chat template)."""
    max_tokens: int
    prompt: Callable[[], list[int]] | None = None
    """Makes the body's ``prompt`` (token ids) when sent, so a long trace's ids are never all
    in memory at once; None when the body is complete (chat)."""

    def payload(self) -> dict[str, Any]:
        return self.body if self.prompt is None else {**self.body, "prompt": self.prompt()}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    timeout_s: float
    """Whole-attempt deadline: connect, prompt processing and the full stream."""
    retries: int
    backoff_s: float = 0.5
    """First back-off; it doubles per retry, up to ``MAX_BACKOFF_S``, with up to 25% jitter."""

    def delay(self, retry: int, rng: random.Random, retry_after: float | None) -> float:
        base = min(self.backoff_s * 2**retry, MAX_BACKOFF_S)
        wait = base * (1.0 + 0.25 * rng.random())
        return max(wait, min(retry_after, MAX_BACKOFF_S)) if retry_after else wait


@dataclass(slots=True)
class LiveResult:
    """What happened to one request; times are seconds from the start of the run."""

    row: int
    request_id: str
    model: str
    session_id: str | None
    endpoint: str
    prompt_tokens: int
    max_tokens: int
    scheduled_s: float | None
    sent_s: float
    """When the first attempt was handed to the HTTP client."""
    done_s: float = float("nan")
    ttft_s: float | None = None
    """Send of the last attempt to its first generated text."""
    e2e_s: float | None = None
    """Send of the first attempt to the end of the last (back-off included)."""
    status: int = 0
    """HTTP status of the last attempt; 0 when no response came (refused, timed out)."""
    ok: bool = False
    error: str | None = None
    retries: int = 0
    retry_error: str | None = None
    """What made the last retry necessary (kept when the retry then succeeded)."""
    server_prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    timings_cache_n: int | None = None
    timings_prompt_n: int | None = None
    finish_reason: str | None = None
    connect_failed: bool = field(default=False, repr=False)
    """The last attempt never reached the server (for dead-backend detection)."""


class AttemptError(Exception):
    """One failed attempt: what to record, and whether a retry can help."""

    def __init__(self, message: str, status: int = 0, *, retriable: bool = True,
                 retry_after: float | None = None, connect: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retriable = retriable
        self.retry_after = retry_after
        self.connect = connect


@dataclass(slots=True)
class _Stream:
    first_token_at: float | None = None
    usage: Any = None
    """As the server sent it; ``_fill`` checks it."""
    timings: Any = None
    finish_reason: str | None = None


async def send(session: aiohttp.ClientSession, base: str, req: LiveRequest, policy: RetryPolicy,
               t0: float, scheduled_s: float | None, headers: dict[str, str]) -> LiveResult:
    """Send ``req`` (retrying as the policy allows); never raises for a failed request."""
    start = time.perf_counter()
    res = LiveResult(row=req.row, request_id=req.request_id, model=req.model, session_id=req.session_id,
                     endpoint=req.path, prompt_tokens=req.prompt_tokens, max_tokens=req.max_tokens,
                     scheduled_s=scheduled_s, sent_s=start - t0)
    rng = random.Random(req.row)
    for attempt in range(policy.retries + 1):
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(policy.timeout_s):
                stream = await _attempt(session, base + req.path, req, headers)
        except TimeoutError:
            err = AttemptError(f"no complete response within --timeout {policy.timeout_s:g}s")
        except AttemptError as e:
            err = e
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            # a response no check above foresaw: this request's error, never the run's end
            err = AttemptError(f"unreadable response: {type(e).__name__}: {e}", 200, retriable=False)
        else:
            _fill(res, stream, sent)
            break
        res.status, res.error, res.connect_failed = err.status, scrub(err.message), err.connect
        if not err.retriable or attempt == policy.retries:
            break
        res.retries += 1
        res.retry_error = scrub(err.message)
        await asyncio.sleep(policy.delay(attempt, rng, err.retry_after))
    end = time.perf_counter()
    res.done_s = end - t0
    res.e2e_s = end - start
    return res


MAX_TOKENS_FIELD = 2**31 - 1
"""Largest token count a server may report (the int32 columns of ``live.parquet``)."""


def _fill(res: LiveResult, stream: _Stream, sent: float) -> None:
    """Record a completed attempt. Every server field is checked: an impossible value (a
    negative, fractional, huge or non-numeric count, ``usage`` that is not an object, more
    cached than prompt tokens) makes the request an error quoting the raw value, while what
    the attempt did measure (TTFT, latency, the valid fields) is kept."""
    res.ok, res.status, res.error, res.connect_failed = True, 200, None, False
    res.ttft_s = None if stream.first_token_at is None else stream.first_token_at - sent
    res.finish_reason = stream.finish_reason
    problems: list[str] = []
    usage = _object(stream.usage, "usage", problems)
    res.server_prompt_tokens = _count(usage, "prompt_tokens", "usage", problems)
    res.completion_tokens = _count(usage, "completion_tokens", "usage", problems)
    details = _object(usage.get("prompt_tokens_details"), "usage.prompt_tokens_details", problems)
    res.cached_tokens = _count(details, "cached_tokens", "usage.prompt_tokens_details", problems)
    timings = _object(stream.timings, "timings", problems)
    res.timings_cache_n = _count(timings, "cache_n", "timings", problems)
    res.timings_prompt_n = _count(timings, "prompt_n", "timings", problems)
    if (res.cached_tokens is not None and res.server_prompt_tokens is not None
            and res.cached_tokens > res.server_prompt_tokens):
        problems.append(f"usage.prompt_tokens_details.cached_tokens = {res.cached_tokens} is more than "
                        f"usage.prompt_tokens = {res.server_prompt_tokens}")
        res.cached_tokens = None
    if problems:
        res.ok = False
        res.error = scrub("the server sent impossible values: " + "; ".join(problems))[:ERROR_TEXT_CHARS]


def _object(value: Any, name: str, problems: list[str]) -> dict[str, Any]:
    """``value`` when it is a JSON object; {} for null/absent; else {} and a problem."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    problems.append(f"{name} = {_raw(value)} (expected an object)")
    return {}


def _count(obj: dict[str, Any], key: str, where: str, problems: list[str]) -> int | None:
    """A token count: a whole number from 0 to ``MAX_TOKENS_FIELD`` (``16.0`` reads as 16);
    None when absent; anything else (``"16"``, -1, 1e308, true) None and a problem."""
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer() and abs(v) <= MAX_TOKENS_FIELD:
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_TOKENS_FIELD:
        problems.append(f"{where}.{key} = {_raw(v)} (expected a whole number from 0 to {MAX_TOKENS_FIELD})")
        return None
    return v


def _raw(v: Any) -> str:
    """A server value as it came, short (a huge one must not flood the error column)."""
    try:
        text = json.dumps(v)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


async def _attempt(session: aiohttp.ClientSession, url: str, req: LiveRequest,
                   headers: dict[str, str]) -> _Stream:
    try:
        async with session.post(url, json=req.payload(), headers=headers) as resp:
            if resp.status != 200:
                text = redact_prompt((await resp.read()).decode("utf-8", "replace"), req.body)
                raise AttemptError(f"HTTP {resp.status}: {text[:ERROR_TEXT_CHARS].strip()}", resp.status,
                                   retriable=resp.status in RETRIABLE_STATUS,
                                   retry_after=_retry_after(resp))
            if resp.content_type != "text/event-stream":
                # An HTML error page from a proxy, plain text, or JSON from a server that
                # ignored "stream": true: name it, instead of "stream cut" further down.
                text = redact_prompt((await resp.content.read(2000)).decode("utf-8", "replace"), req.body)
                raise AttemptError(f"HTTP 200 but {resp.content_type or 'no content type'}, not an event "
                                   f"stream (is --backend an OpenAI-compatible server?): "
                                   f"{' '.join(text.split())[:120]}", 200, retriable=False)
            try:
                return await _read_stream(resp)
            except AttemptError as e:  # an error event in the stream may echo the request too
                e.message = redact_prompt(e.message, req.body)
                raise
    except aiohttp.ClientConnectorError as e:
        raise AttemptError(f"cannot connect: {e}", connect=True) from None
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as e:
        raise AttemptError(f"stream cut: {type(e).__name__}: {e}") from None
    except aiohttp.ClientError as e:
        raise AttemptError(f"transport error: {type(e).__name__}: {e}") from None


PROMPT_PLACEHOLDER = "<prompt text>"


def redact_prompt(text: str, body: dict[str, Any]) -> str:
    """Cut the request's own message text out of a server's error body.

    Validation errors (vLLM's, for one) echo the request back, and ``live.parquet`` keeps the
    error text: prompt text stays out of reports unless asked for. Every line of every message
    (8 characters or more) is replaced where it appears, raw or JSON-escaped.
    """
    pieces: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        parts = content if isinstance(content, list) else [content]
        for part in parts:
            value = part.get("text") if isinstance(part, dict) else part
            if isinstance(value, str):
                pieces.extend(line.strip() for line in value.splitlines())
    if isinstance(body.get("prompt"), str):
        pieces.extend(line.strip() for line in body["prompt"].splitlines())
    for line in sorted({p for p in pieces if len(p) >= 8}, key=len, reverse=True):
        text = text.replace(line, PROMPT_PLACEHOLDER).replace(json.dumps(line)[1:-1], PROMPT_PLACEHOLDER)
    return text


async def _read_stream(resp: aiohttp.ClientResponse) -> _Stream:
    out = _Stream()
    done = False
    pending = b""
    async for piece in resp.content.iter_any():
        pending += piece
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            done = _event(raw, out) or done
    if pending:
        done = _event(pending, out) or done
    if not done:
        raise AttemptError("stream cut: ended before [DONE]", 200)
    return out


def _event(raw: bytes, out: _Stream) -> bool:
    """Take one SSE line into ``out``; True for the closing ``[DONE]``."""
    line = raw.decode("utf-8", "replace").strip()
    if not line.startswith("data:"):
        return False
    data = line[5:].strip()
    if data == "[DONE]":
        return True
    try:
        chunk = parse_json(data)
    except JsonProblem as e:
        raise AttemptError(f"bad stream chunk ({e}): {data[:80]!r}", 200) from None
    if not isinstance(chunk, dict):
        return False
    if "error" in chunk:
        raise AttemptError(f"error in stream: {json.dumps(chunk['error'])[:ERROR_TEXT_CHARS]}", 200)
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise AttemptError(f"bad stream chunk: choices = {_raw(choices)} (expected a list)", 200,
                           retriable=False)
    if choices and out.first_token_at is None:
        out.first_token_at = time.perf_counter()
    for choice in choices:
        reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        if reason:
            if not isinstance(reason, str):
                raise AttemptError(f"bad stream chunk: finish_reason = {_raw(reason)} (expected a string)",
                                   200, retriable=False)
            out.finish_reason = reason[:40]
    if chunk.get("usage") is not None:
        out.usage = chunk["usage"]  # checked with the other fields when the stream is complete
    if chunk.get("timings") is not None:
        out.timings = chunk["timings"]
    return False


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    raw = resp.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None
