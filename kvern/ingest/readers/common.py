"""Metadata shared by the request-body formats (chat, completions, pre-tokenized).

A line may carry ``timestamp`` (ISO-8601, epoch s or ms), ``request_id``/``id``,
``session_id``/``user`` and ``output_tokens`` or a response's ``usage.completion_tokens``.
The proxy wrapper shape ``{"timestamp", "request": {...}, "response": {...}}`` is unwrapped
here, so every body reader handles it. ``kvern proxy`` writes that shape with a
``kvern_proxy`` key; its records of requests the upstream never served (an error status, an
unparsable body) are skipped by ingest (``proxy_skip``), and a ``--content none`` log, which
holds no prompts, is refused with a message that says so.
"""

from __future__ import annotations

from typing import Any

from kvern.ingest.records import Fields, RawRequest


def unwrap(f: Fields) -> tuple[Fields, Fields | None]:
    """The request body and the response body (if any) of a line, wrapper or not."""
    if "request" not in f.obj:
        return f, None
    body = f.obj["request"]
    if not isinstance(body, dict):
        raise f.error(f"'request' must be a JSON object (the request body), got {type(body).__name__}")
    resp = f.obj.get("response")
    if resp is not None and not isinstance(resp, dict):
        raise f.error(f"'response' must be a JSON object, got {type(resp).__name__}")
    return Fields(body, f.path, f.line), None if resp is None else Fields(resp, f.path, f.line)


def is_wrapper(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("request"), dict)


PROXY_MARK = "kvern_proxy"


def proxy_skip(obj: dict[str, Any]) -> bool:
    """A ``kvern proxy`` record of a request that never reached the server's cache."""
    return obj.get(PROXY_MARK) is not None and obj.get("served") is False


def proxy_without_prompts(obj: dict[str, Any]) -> bool:
    """A ``kvern proxy --content none`` record: metadata only, nothing to tokenize."""
    return obj.get(PROXY_MARK) is not None and obj.get("content") == "none"


def metadata(f: Fields, body: Fields, resp: Fields | None) -> RawRequest:
    """A ``RawRequest`` with everything but the payload, looked up on the line, then the body."""
    def first_str(*keys: str) -> str | None:
        for src in (f, body):
            for k in keys:
                if src.has(k):
                    return src.str_(k)
        return None

    ts = None
    for src in (f, body):
        if src.has("timestamp"):
            ts = src.timestamp("timestamp")
            break
    request_id = first_str("request_id", "id")
    if request_id is None and resp is not None and resp.has("id"):
        request_id = resp.str_("id")
    output = None
    for src in (f, body):
        if src.has("output_tokens"):
            output = src.int_("output_tokens")
            break
    if output is None:
        output = _usage_completion(resp) if resp is not None else None
        if output is None:
            output = _usage_completion(f)
    return RawRequest(
        line=f.line,
        request_id=request_id,
        timestamp_s=ts,
        model=body.str_("model") or f.str_("model"),
        session_id=first_str("session_id", "user"),
        output_tokens=output,
    )


def _usage_completion(src: Fields) -> int | None:
    usage = src.obj.get("usage")
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise src.error(f"'usage' must be a JSON object, got {type(usage).__name__}")
    return Fields(usage, src.path, src.line).int_("completion_tokens")
