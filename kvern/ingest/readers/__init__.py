"""Log readers, one module per format, behind one interface (``base.Reader``).

``FORMATS`` is the name-to-class table; auto-detection tries them in this order on the first
valid line of each file, so a line with both ``prompt`` and ``prompt_token_ids`` counts as
pre-tokenized (the ids are what the server saw).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kvern.infra.errors import InputError, UsageError
from kvern.ingest.readers.bailian import BailianReader
from kvern.ingest.readers.base import Reader, ReadOptions
from kvern.ingest.readers.completions import CompletionsReader, TokensReader
from kvern.ingest.readers.mooncake import MooncakeReader
from kvern.ingest.readers.openai_chat import OpenAIChatReader
from kvern.ingest.readers.proxy_hashes import ProxyHashesReader

FORMATS: dict[str, type[Any]] = {
    ProxyHashesReader.name: ProxyHashesReader,
    BailianReader.name: BailianReader,
    MooncakeReader.name: MooncakeReader,
    OpenAIChatReader.name: OpenAIChatReader,
    TokensReader.name: TokensReader,
    CompletionsReader.name: CompletionsReader,
}
HASH_ID_FORMATS = frozenset({BailianReader.name, MooncakeReader.name, ProxyHashesReader.name})


def detect_format(obj: dict[str, Any], path: Path, line: int, default: str | None = None) -> str:
    for name, cls in FORMATS.items():
        if cls.matches(obj):
            return name
    if default is not None:
        return default
    keys = ", ".join(sorted(obj)[:8]) or "none"
    raise InputError(f"cannot tell the log format from this line (keys: {keys}); "
                     f"pass --format ({', '.join(FORMATS)})", path, line)


def open_reader(fmt: str, opts: ReadOptions) -> Reader:
    try:
        cls = FORMATS[fmt]
    except KeyError:
        raise UsageError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}") from None
    reader: Reader = cls(opts)
    return reader


__all__ = ["FORMATS", "HASH_ID_FORMATS", "ReadOptions", "Reader", "detect_format", "open_reader"]
