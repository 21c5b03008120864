"""The analytics store: one SQLite file, schema version ``SCHEMA_VERSION`` (docs/proxy.md).

The analytics worker is its only writer: rows arrive in batches (one transaction per batch),
in WAL mode so the proxy's endpoints read while it writes. Tables:

- ``meta(key, value)``: ``schema_version`` and, per run, the settings and the worker's progress;
- ``requests``: one row per recorded exchange (run_id, seq primary key);
- ``minutes``: per run, minute and model, the sums the endpoints report (no percentiles: those
  are the proxy's in-memory histograms);
- ``hot_prefixes``: per run and model, the latest hot-prefix snapshot.

The version is also ``PRAGMA user_version``; a store of another version is refused, never
migrated silently.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kvern.infra.errors import UsageError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, request_id TEXT NOT NULL, model TEXT NOT NULL,
    endpoint TEXT NOT NULL, status INTEGER NOT NULL, outcome TEXT NOT NULL, served INTEGER NOT NULL,
    stream INTEGER NOT NULL, received_s REAL NOT NULL, first_byte_s REAL, done_s REAL,
    ttft_ms REAL, e2e_ms REAL, overhead_ms REAL,
    prompt_tokens INTEGER, predicted_cached_tokens INTEGER,
    server_prompt_tokens INTEGER, server_cached_tokens INTEGER, completion_tokens INTEGER,
    finish_reason TEXT, error TEXT, analyzed_s REAL NOT NULL,
    PRIMARY KEY (run_id, seq));
CREATE INDEX IF NOT EXISTS requests_time ON requests (run_id, received_s);
CREATE TABLE IF NOT EXISTS minutes (
    run_id TEXT NOT NULL, minute INTEGER NOT NULL, model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    analyzed INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL DEFAULT 0,
    predicted_cached_tokens INTEGER NOT NULL DEFAULT 0, predicted_cached_sq REAL NOT NULL DEFAULT 0,
    reported INTEGER NOT NULL DEFAULT 0, server_prompt_tokens INTEGER NOT NULL DEFAULT 0,
    server_cached_tokens INTEGER NOT NULL DEFAULT 0, server_cached_sq REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, minute, model));
CREATE TABLE IF NOT EXISTS hot_prefixes (
    run_id TEXT NOT NULL, model TEXT NOT NULL, rank INTEGER NOT NULL, key TEXT NOT NULL,
    parent INTEGER, depth_tokens INTEGER NOT NULL, reuses INTEGER NOT NULL,
    tokens_saved INTEGER NOT NULL, text TEXT, updated_s REAL NOT NULL,
    PRIMARY KEY (run_id, model, rank));
"""

REQUEST_COLUMNS = ("run_id", "seq", "request_id", "model", "endpoint", "status", "outcome", "served",
                   "stream", "received_s", "first_byte_s", "done_s", "ttft_ms", "e2e_ms", "overhead_ms",
                   "prompt_tokens", "predicted_cached_tokens", "server_prompt_tokens",
                   "server_cached_tokens", "completion_tokens", "finish_reason", "error", "analyzed_s")
ROLLUP_COLUMNS = ("requests", "failed", "analyzed", "prompt_tokens", "predicted_cached_tokens",
                  "predicted_cached_sq", "reported", "server_prompt_tokens", "server_cached_tokens",
                  "server_cached_sq")


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def create(path: Path, run_id: str, settings: dict[str, Any]) -> None:
    """Create (or open) the store and register this run; another schema version is a usage error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = connect(path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise UsageError(f"--store {path}: not an SQLite file kvern can use ({e})") from None
    if tables and version != SCHEMA_VERSION:
        conn.close()
        raise UsageError(f"--store {path}: written with store schema {version}, this kvern writes "
                         f"{SCHEMA_VERSION}; give another --store")
    with conn:
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                     (f"run:{run_id}:settings", json.dumps(settings, sort_keys=True)))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_run', ?)", (run_id,))
    conn.close()


class StoreWriter:
    """Batched writes: ``add`` buffers, ``flush`` writes a batch in one transaction."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.conn = connect(path)
        self.run_id = run_id
        self._rows: list[tuple[Any, ...]] = []
        self._rollup: dict[tuple[int, str], list[float]] = {}
        self.progress: dict[str, Any] = {}

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(tuple(row.get(c) for c in REQUEST_COLUMNS))
        minute = int(row["received_s"] // 60) * 60
        acc = self._rollup.get((minute, row["model"]))
        if acc is None:
            acc = self._rollup[(minute, row["model"])] = [0.0] * len(ROLLUP_COLUMNS)
        acc[0] += 1
        if not row["served"]:
            acc[1] += 1
        p, c = row.get("prompt_tokens"), row.get("predicted_cached_tokens")
        if p is not None and c is not None:
            acc[2] += 1
            acc[3] += p
            acc[4] += c
            acc[5] += c * (c - 1) / 2
        sp, sc = row.get("server_prompt_tokens"), row.get("server_cached_tokens")
        if sp is not None and sc is not None:
            acc[6] += 1
            acc[7] += sp
            acc[8] += sc
            acc[9] += sc * (sc - 1) / 2

    @property
    def pending(self) -> int:
        return len(self._rows)

    def flush(self) -> None:
        if not self._rows and not self.progress:
            return
        cols = ", ".join(REQUEST_COLUMNS)
        marks = ", ".join("?" * len(REQUEST_COLUMNS))
        sets = ", ".join(f"{c} = {c} + excluded.{c}" for c in ROLLUP_COLUMNS)
        with self.conn:
            self.conn.executemany(f"INSERT OR REPLACE INTO requests ({cols}) VALUES ({marks})", self._rows)
            self.conn.executemany(
                f"INSERT INTO minutes (run_id, minute, model, {', '.join(ROLLUP_COLUMNS)}) "
                f"VALUES (?, ?, ?, {', '.join('?' * len(ROLLUP_COLUMNS))}) "
                f"ON CONFLICT (run_id, minute, model) DO UPDATE SET {sets}",
                [(self.run_id, m, model, *v) for (m, model), v in self._rollup.items()])
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                              (f"run:{self.run_id}:progress", json.dumps(self.progress, sort_keys=True)))
        self._rows.clear()
        self._rollup.clear()

    def hot_prefixes(self, rows: Iterable[tuple[Any, ...]], models: Iterable[str]) -> None:
        """Replace the snapshot of ``models``.

        Rows: (model, rank, key, parent, depth, reuses, saved, text, time)."""
        with self.conn:
            for model in models:
                self.conn.execute("DELETE FROM hot_prefixes WHERE run_id = ? AND model = ?",
                                  (self.run_id, model))
            self.conn.executemany("INSERT INTO hot_prefixes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                  [(self.run_id, *r) for r in rows])

    def close(self) -> None:
        self.flush()
        self.conn.close()


class StoreReader:
    """What the endpoints need, read from a read-only connection (used from one thread)."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._conn: sqlite3.Connection | None = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.path, readonly=True)
        return self._conn

    def sums(self, since_minute: int | None = None) -> dict[str, dict[str, float]]:
        """Per model: the ``minutes`` sums of the run (from ``since_minute``, epoch seconds)."""
        cols = ", ".join(f"SUM({c})" for c in ROLLUP_COLUMNS)
        q = f"SELECT model, {cols} FROM minutes WHERE run_id = ?"
        args: list[Any] = [self.run_id]
        if since_minute is not None:
            q += " AND minute >= ?"
            args.append(since_minute)
        rows = self._c().execute(q + " GROUP BY model ORDER BY model", args).fetchall()
        return {r[0]: dict(zip(ROLLUP_COLUMNS, r[1:], strict=True)) for r in rows}

    def progress(self) -> dict[str, Any]:
        row = self._c().execute("SELECT value FROM meta WHERE key = ?",
                                (f"run:{self.run_id}:progress",)).fetchone()
        return json.loads(row[0]) if row else {}

    def hot_prefixes(self) -> dict[str, list[dict[str, Any]]]:
        rows = self._c().execute(
            "SELECT model, rank, key, parent, depth_tokens, reuses, tokens_saved, text, updated_s "
            "FROM hot_prefixes WHERE run_id = ? ORDER BY model, rank", (self.run_id,)).fetchall()
        out: dict[str, list[dict[str, Any]]] = {}
        for model, rank, key, parent, depth, reuses, saved, text, t in rows:
            item = {"rank": rank, "key": key, "parent": parent, "depth_tokens": depth, "reuses": reuses,
                    "tokens_saved": saved, "updated_s": t}
            if text is not None:
                item["text"] = text
            out.setdefault(model, []).append(item)
        return out

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
