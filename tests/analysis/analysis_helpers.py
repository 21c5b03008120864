"""Build small canonical traces straight from token ids (no log, no tokenizer)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from kvern.ingest.blocks import token_block_keys
from kvern.ingest.trace import TRACE_SCHEMA, Trace, TraceMeta, with_meta


def make_trace(prompts: Sequence[Sequence[int]], *, block_size: int = 4,
               models: Sequence[str] | None = None, sessions: Sequence[str | None] | None = None,
               arrivals: Sequence[float] | None = None, with_tokens: bool | Sequence[bool] = True) -> Trace:
    n = len(prompts)
    keeps = [with_tokens] * n if isinstance(with_tokens, bool) else list(with_tokens)
    models = list(models) if models is not None else ["m"] * n
    table = pa.table({
        "request_id": [str(i) for i in range(n)],
        "arrival_s": list(arrivals) if arrivals is not None else [float(i) for i in range(n)],
        "model": models,
        "session_id": list(sessions) if sessions is not None else [None] * n,
        "prompt_tokens": [len(p) for p in prompts],
        "output_tokens": [None] * n,
        "block_keys": [token_block_keys(m, p, block_size) for m, p in zip(models, prompts, strict=True)],
        "token_ids": [list(p) if keep else None for p, keep in zip(prompts, keeps, strict=True)],
    }, schema=TRACE_SCHEMA)
    meta = TraceMeta(block_size=block_size, source="test")
    return Trace(with_meta(table, meta), meta)


def text_ids(text: str) -> list[int]:
    """A byte-level tokenization: one token per UTF-8 byte (decode: ``bytes(ids).decode()``)."""
    return list(text.encode("utf-8"))


def byte_decode(_model: str, ids: Sequence[int]) -> str:
    return bytes(int(i) for i in ids).decode("utf-8", errors="replace")
