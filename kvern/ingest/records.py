"""What a reader makes of one log line, before tokenizing and hashing.

Readers only check shapes and types; tokenizing, normalizing and block keys happen later in
``pipeline``. Exactly one payload is set: ``messages`` (chat), ``prompt`` (completion text),
``token_ids`` (pre-tokenized) or ``hash_ids`` (hash-id trace).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kvern.infra.errors import InputError


@dataclass(slots=True)
class RawRequest:
    line: int
    request_id: str | None = None
    timestamp_s: float | None = None
    """Absolute time in seconds (any origin); ``None`` when the line has none."""
    model: str | None = None
    session_id: str | None = None
    output_tokens: int | None = None
    messages: list[dict[str, Any]] | None = None
    tools: list[Any] | None = None
    prompt: str | None = None
    token_ids: list[int] | None = None
    hash_ids: list[int] | None = None
    input_length: int | None = None
    block_size: int | None = None
    """Tokens per hash id (hash-id traces only)."""
    skipped_parts: int = 0
    """Non-text content parts dropped under ``--skip-invalid``."""


class Fields:
    """Typed access to one line's JSON object; every failure names file, line and field."""

    def __init__(self, obj: dict[str, Any], path: Path, line: int) -> None:
        self.obj = obj
        self.path = path
        self.line = line

    def error(self, message: str) -> InputError:
        return InputError(message, self.path, self.line)

    def has(self, key: str) -> bool:
        return self.obj.get(key) is not None

    def require(self, key: str) -> Any:
        if key not in self.obj or self.obj[key] is None:
            raise self.error(f"missing field '{key}'")
        return self.obj[key]

    def int_(self, key: str, *, required: bool = False, minimum: int = 0) -> int | None:
        v = self.require(key) if required else self.obj.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise self.error(f"'{key}' must be an integer, got {_show(v)}")
        if v < minimum:
            what = "negative" if v < 0 else f"below {minimum}"
            raise self.error(f"'{key}' is {what}: {v}")
        if v >= 2**31:  # token counts are int32 columns of the trace
            raise self.error(f"'{key}' is too large for a token count: {v}")
        return v

    def str_(self, key: str, *, required: bool = False) -> str | None:
        v = self.require(key) if required else self.obj.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise self.error(f"'{key}' must be a string, got {_show(v)}")
        return str(v)

    def int_list(self, key: str, *, token_ids: bool = False) -> list[int]:
        """A list of 64-bit integers; ``token_ids`` also requires each to fit a non-negative int32."""
        v = self.require(key)
        if not isinstance(v, list):
            raise self.error(f"'{key}' must be a list of integers, got {_show(v)}")
        for i, x in enumerate(v):
            if isinstance(x, bool) or not isinstance(x, int):
                raise self.error(f"'{key}[{i}]' must be an integer, got {_show(x)}")
            if token_ids and not 0 <= x < 2**31:
                raise self.error(f"'{key}[{i}]' is not a token id: {x}")
            if not -(2**63) <= x < 2**63:  # hash ids are hashed as 8 bytes
                raise self.error(f"'{key}[{i}]' does not fit in 64 bits: {x}")
        return v

    def timestamp(self, key: str, *, unit: str | None = None) -> float | None:
        """Seconds from an ISO-8601 string or a number.

        ``unit`` fixes the unit of a number ("s" or "ms"); without it an epoch number above
        1e11 is taken as milliseconds (1e11 s would be the year 5138).
        """
        v = self.obj.get(key)
        if v is None:
            return None
        if isinstance(v, str):
            try:
                dt = datetime.fromisoformat(v.strip())
            except ValueError:
                raise self.error(f"'{key}' is not an ISO-8601 time or a number: {_show(v)}") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return dt.timestamp()
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.error(f"'{key}' must be a time (ISO-8601 or epoch number), got {_show(v)}")
        if v < 0:
            raise self.error(f"'{key}' is negative: {v}")
        if unit == "ms" or (unit is None and v > 1e11):
            return float(v) / 1000.0
        return float(v)


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
