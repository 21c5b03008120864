"""The one interface every log reader fills in.

A reader is stateful per file (Bailian chains a chat to its parent), so the pipeline makes a
fresh one for each file through ``open_reader``. ``parse`` turns one line's JSON object into a
``RawRequest`` or raises ``InputError`` naming the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from kvern.ingest.records import Fields, RawRequest


@dataclass(frozen=True, slots=True)
class ReadOptions:
    trace_block_size: int = 512
    """Tokens per Mooncake hash id."""
    bailian_block_size: int = 16
    """Tokens per Bailian hash id."""
    skip_invalid: bool = False
    """Drop non-text content parts (counted) instead of failing the line."""


class Reader(Protocol):
    name: ClassVar[str]

    @staticmethod
    def matches(obj: dict[str, Any]) -> bool:
        """Whether a line of this shape belongs to this format (for auto-detection)."""
        ...

    def parse(self, f: Fields) -> RawRequest: ...
