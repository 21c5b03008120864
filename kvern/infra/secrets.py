"""Secrets stay out of every file kvern writes and everything it prints.

A server may echo what it was sent (an ``Authorization`` header in a 401 body, a URL with
``user:pw@`` in a proxy's error): ``scrub`` cuts every registered secret out of a text, in
the forms it travels in (raw, JSON-escaped, URL-encoded), and any bearer token or ``sk-``
style key whatever its source. The console and the recorders call it on every text that
came from outside.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

REDACTED = "[redacted]"

_SECRETS: set[str] = set()
_MIN_LENGTH = 4
"""Shorter values are not scrubbed (they would cut ordinary words out of messages)."""

_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)(\s+|%20)[A-Za-z0-9._~+/=:-]{4,}"),
    re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)\b(api[_-]?key|x-api-key|authorization)(\"?\s*[:=]\s*\"?)(?!bearer\b|basic\b|\[)"
               r"[^\s\"',}&]{4,}"),
)


def register_secret(value: str | None) -> None:
    """Scrub ``value`` from every text from now on (for the rest of this process)."""
    if not value or len(value) < _MIN_LENGTH:
        return
    _SECRETS.update({value, json.dumps(value)[1:-1], quote(value, safe="")})


def scrub(text: str) -> str:
    """``text`` without any registered secret, bearer token or API-key-looking value."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _PATTERNS[0].sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    text = _PATTERNS[1].sub(REDACTED, text)
    return _PATTERNS[2].sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
