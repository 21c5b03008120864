"""Request bodies to replay, one per trace row.

- A chat log replays as it was logged: ``/v1/chat/completions`` with the logged ``messages``
  (and ``tools``), read again from the raw log, so the server applies its own chat template.
- A trace without messages but with token ids (a completions log, or an ingested Parquet)
  replays through ``/v1/completions`` with the ids as the prompt: the server sees exactly
  kvern's tokens.
- A hash-id trace (Mooncake, Bailian) has neither: each block key is turned into a block of
  token ids drawn from a generator seeded by the key, so equal keys give equal blocks and a
  shared prefix in the trace is a shared prefix on the server.

Every body asks for ``max_tokens`` = the logged output length (else the configured default),
``temperature: 0`` and a stream that ends with usage.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from kvern.infra.console import NULL_OUTPUT, Output
from kvern.infra.errors import InputError
from kvern.ingest.readers.base import ReadOptions
from kvern.ingest.readers.common import is_wrapper
from kvern.ingest.readers.openai_chat import OpenAIChatReader
from kvern.ingest.records import Fields
from kvern.ingest.source import iter_lines, line_id, log_files
from kvern.ingest.trace import Trace, is_parquet
from kvern.live.client import LiveRequest

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"

SYNTHETIC_ID_RANGE = (1000, 30000)
"""Token ids for hash-id traces: ordinary tokens in every common vocabulary (≥ 32k)."""


def chat_bodies(log: Path, out: Output = NULL_OUTPUT) -> dict[str, dict[str, Any]]:
    """The chat request of every well-formed line of a raw log, by ingest's request id.

    Lines go through ingest's own chat reader, so ids (``request_id``/``id``, else the line
    number) and content (text parts joined) are what the trace was built from; tool calls keep
    their logged form (``arguments`` as the JSON string the API expects).
    """
    bodies: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    reader = OpenAIChatReader(ReadOptions(skip_invalid=True))
    files = log_files(log)
    for file, item in ((f, i) for f in files for i in iter_lines(f, out)):
        if isinstance(item, InputError) or not OpenAIChatReader.matches(item.obj):
            continue
        try:
            raw = reader.parse(Fields(item.obj, file, item.number))
        except InputError:
            continue
        logged = (item.obj["request"] if is_wrapper(item.obj) else item.obj)["messages"]
        messages = []
        for msg, orig in zip(raw.messages or [], logged, strict=True):
            sent = {k: v for k, v in msg.items() if k != "tool_calls"}
            if isinstance(orig, dict) and orig.get("tool_calls") is not None:
                sent["tool_calls"] = orig["tool_calls"]
            messages.append(sent)
        body: dict[str, Any] = {"messages": messages}
        if raw.tools:
            body["tools"] = raw.tools
        key = raw.request_id if raw.request_id is not None else line_id(file, raw.line, len(files) > 1)
        if key in first_line:
            # Trace rows are matched to logged requests by id: a repeat would send one row
            # the other's messages.
            raise InputError(f"request id {key!r} repeats line {first_line[key]}; live replay needs "
                             "one logged request per id", file, item.number)
        first_line[key] = item.number
        bodies[key] = body
    return bodies


def synthetic_prompt(block_keys: Iterable[int], prompt_tokens: int, block_size: int) -> list[int]:
    """Token ids for a hash-id prompt: block i is ``block_size`` ids seeded by its key.

    The last block covers what is left of ``prompt_tokens``; the same key always yields the
    same ids, whatever the request, so prefixes shared in the trace are shared on the server.
    """
    lo, hi = SYNTHETIC_ID_RANGE
    parts = []
    left = prompt_tokens
    for key in block_keys:
        if left <= 0:
            break
        ids = np.random.default_rng(int(key)).integers(lo, hi, size=block_size, dtype=np.int64)
        parts.append(ids[: min(left, block_size)])
        left -= block_size
    return np.concatenate(parts).tolist() if parts else []


def build_requests(trace: Trace, source: Path | None, *, default_max_tokens: int,
                   served_model: str | None = None, out: Output = NULL_OUTPUT) -> list[LiveRequest]:
    """One request per trace row, in trace (arrival) order."""
    table = trace.table
    has_chat = OpenAIChatReader.name in trace.meta.format.split("+")
    chats = (chat_bodies(source, out) if has_chat and source is not None
             and (source.is_dir() or not is_parquet(source)) else {})
    ids = table.column("request_id").to_pylist()
    models = table.column("model").to_pylist()
    sessions = table.column("session_id").to_pylist()
    prompts = table.column("prompt_tokens").to_pylist()
    outputs = table.column("output_tokens").to_pylist()
    reqs = []
    for row, rid in enumerate(ids):
        logged = outputs[row]
        max_tokens = int(logged) if logged is not None and logged > 0 else default_max_tokens
        body: dict[str, Any] = {"model": served_model or models[row], "max_tokens": max_tokens,
                                "temperature": 0, "stream": True,
                                "stream_options": {"include_usage": True}}
        if rid in chats:
            path, prompt = CHAT_PATH, None
            body.update(chats[rid])
        else:
            path, prompt = COMPLETIONS_PATH, functools.partial(row_prompt, trace, row)
        reqs.append(LiveRequest(row=row, request_id=rid, model=models[row], session_id=sessions[row],
                                path=path, body=body, prompt_tokens=int(prompts[row]),
                                max_tokens=max_tokens, prompt=prompt))
    return reqs


def row_prompt(trace: Trace, row: int) -> list[int]:
    """The token ids trace row ``row`` is sent as: its own, else synthetic ids from its keys."""
    ids = trace.table.column("token_ids")[row].as_py()
    if ids is None:
        ids = synthetic_prompt(trace.table.column("block_keys")[row].as_py(),
                               trace.table.column("prompt_tokens")[row].as_py(), trace.meta.block_size)
    return ids
