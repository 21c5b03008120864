"""``live.parquet``: one row per replayed request, kept valid on disk while the run goes on.

Every flush rewrites the whole file atomically (``report/atomic.py``), so at any moment the
file on disk is a complete Parquet table: the rows finished so far, marked ``partial`` in the
schema metadata until the run ends cleanly. The file is written once before the first request
and then at most every ``flush_every_s``, so that a fast run does not spend its time
rewriting; a run that is interrupted or loses its backend flushes once more before it stops,
so only a hard kill can lose the last interval's rows.
"""

from __future__ import annotations

import json
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

import pyarrow as pa

from kvern.infra.files import read_tagged_parquet, write_parquet
from kvern.live.client import LiveResult

LIVE_SCHEMA = pa.schema([
    pa.field("row", pa.int64(), nullable=False),
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("session_id", pa.string()),
    pa.field("endpoint", pa.string(), nullable=False),
    pa.field("prompt_tokens", pa.int32(), nullable=False),
    pa.field("max_tokens", pa.int32(), nullable=False),
    pa.field("scheduled_s", pa.float64()),
    pa.field("sent_s", pa.float64(), nullable=False),
    pa.field("done_s", pa.float64(), nullable=False),
    pa.field("ttft_s", pa.float64()),
    pa.field("e2e_s", pa.float64()),
    pa.field("status", pa.int32(), nullable=False),
    pa.field("ok", pa.bool_(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("retries", pa.int32(), nullable=False),
    pa.field("retry_error", pa.string()),
    pa.field("server_prompt_tokens", pa.int32()),
    pa.field("completion_tokens", pa.int32()),
    pa.field("cached_tokens", pa.int32()),
    pa.field("timings_cache_n", pa.int32()),
    pa.field("timings_prompt_n", pa.int32()),
    pa.field("finish_reason", pa.string()),
])
_META_KEY = b"kvern.live"
_FIELDS = [f.name for f in fields(LiveResult) if f.name in LIVE_SCHEMA.names]


def _table(cols: dict[str, list[Any]], meta: dict[str, Any]) -> pa.Table:
    """Rows in trace order (``row``), with ``meta`` (run settings, ``partial``) attached."""
    table = pa.table(cols, schema=LIVE_SCHEMA).sort_by("row")
    return table.replace_schema_metadata({_META_KEY: json.dumps(meta, sort_keys=True).encode()})


def read_live(path: str | Path) -> tuple[pa.Table, dict[str, Any]]:
    """Read ``live.parquet`` and its run metadata (``partial`` says whether the run finished)."""
    table, raw = read_tagged_parquet(path, _META_KEY, "kvern live-replay table")
    return table, json.loads(raw)


class LiveSink:
    """Collects results as requests finish and keeps ``path`` a valid, current Parquet file.

    ``add`` only records; the replay loop calls ``flush`` from a worker thread every
    ``flush_every_s`` while results come in (so writing never stalls the send schedule) and
    once more, in the foreground, when the run ends. A lock keeps writes in order.
    """

    def __init__(self, path: Path, meta: dict[str, Any], flush_every_s: float = 1.0) -> None:
        self.path = path
        self.meta = dict(meta)
        self.flush_every_s = flush_every_s
        self.count = 0
        """Results added so far."""
        self.dirty = False
        self._cols: dict[str, list[Any]] = {name: [] for name in _FIELDS}
        self._lock = threading.Lock()

    def add(self, result: LiveResult) -> None:
        # Columns grow as results come, so a flush converts lists instead of walking objects
        # (which would hold the interpreter lock long enough to delay sends).
        for name, col in self._cols.items():
            col.append(getattr(result, name))
        self.count += 1
        self.dirty = True

    def table(self, n: int | None = None) -> pa.Table:
        """The first ``n`` results (default: all so far), as ``live.parquet`` holds them."""
        n = self.count if n is None else n
        return _table({name: col[:n] for name, col in self._cols.items()}, self.meta)

    def flush(self, *, partial: bool, **extra: Any) -> None:
        with self._lock:
            self.dirty = False
            n = self.count  # results may still arrive while a worker thread writes
            self.meta.update(extra, partial=partial, requests_done=n)
            write_parquet(self.table(n), self.path)
