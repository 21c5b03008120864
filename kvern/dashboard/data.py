"""What the dashboard's pages read: report folders (``kvern.report.folder``) and, for the
interactive charts, their Parquet files as DataFrames; for the Live page, the proxy's SQLite
store (read-only).

Plain functions, no Streamlit, so they are tested and reused without a running app. Parquet
reads are cached per (file, modification time): a rerun of the command shows up, an unchanged
file is read once.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from kvern.report.folder import ReportFolder, find_folders

MAX_CURVE_POINTS = 1500
"""Points of the exact LRU curve sent to the browser per model (log-spaced; each value exact)."""


def load_runs(dirs: Sequence[str | Path], errors: list[str] | None = None) -> list[ReportFolder]:
    """Every report folder under ``dirs``; problems go to ``errors`` instead of raising."""
    return find_folders(dirs, errors if errors is not None else [])


def runs_table(runs: Sequence[ReportFolder]) -> pd.DataFrame:
    """One row per run: what ran on what, and its headline numbers in words."""
    from kvern.report.html import headline_text

    return pd.DataFrame([{
        "run": f.name, "command": f.kind, "trace": f.trace, "profile": f.profile,
        "partial": f.partial, "headline": headline_text(f.headline()), "folder": str(f.path),
    } for f in runs], columns=["run", "command", "trace", "profile", "partial", "headline", "folder"])


def label(f: ReportFolder) -> str:
    return f"{f.name} · {f.kind} · {f.trace}" if f.trace else f"{f.name} · {f.kind}"


def summary_frame(f: ReportFolder) -> pd.DataFrame:
    """compare/replay: every summary row (model "*" = the whole trace when there are several)."""
    df = pd.DataFrame(f.document.get("summary", []))
    if df.empty:
        return df
    df["model"] = df["model"].replace({"*": "all models"})
    return df


def sweep_points(f: ReportFolder) -> pd.DataFrame:
    """sweep: one row per model × policy × sampled capacity (a copy: the cache keeps the original)."""
    return _parquet(f.path / "sweep.parquet", _mtime(f.path / "sweep.parquet")).copy()


def lru_curve(f: ReportFolder) -> pd.DataFrame:
    """The exact LRU curve, thinned to ``MAX_CURVE_POINTS`` log-spaced capacities per model
    (empty when the profile has none)."""
    path = f.path / "lru_curve.parquet"
    if not path.is_file():
        return pd.DataFrame()
    return _thin_curve(_parquet(path, _mtime(path)))


def _thin_curve(df: pd.DataFrame) -> pd.DataFrame:
    """Keep, per model, the step rows nearest to log-spaced capacities (values stay exact)."""
    parts = []
    for _, g in df[df["capacity_blocks"] > 0].groupby("model", sort=False):
        if len(g) > MAX_CURVE_POINTS:
            caps = g["capacity_blocks"].to_numpy()
            want = np.geomspace(caps[0], caps[-1], MAX_CURVE_POINTS)
            idx = np.unique(np.clip(np.searchsorted(caps, want, side="right") - 1, 0, len(g) - 1))
            g = g.iloc[idx]
        parts.append(g)
    return pd.concat(parts, ignore_index=True) if parts else df.iloc[0:0]


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.is_file() else 0.0


@functools.lru_cache(maxsize=64)
def _parquet(path: Path, mtime: float) -> pd.DataFrame:
    del mtime  # part of the cache key only
    return pq.read_table(path).to_pandas() if path.is_file() else pd.DataFrame()


# -- the proxy's SQLite store (the Live page) -------------------------------------------------
REQUEST_FIELDS = ("model", "served", "received_s", "done_s", "ttft_ms", "overhead_ms", "analyzed_s")


@dataclass
class LiveStore:
    """What the Live page shows of one proxy run, read from the store in one go.

    ``error`` is set (and the rest empty) when the store cannot be used; ``minutes`` holds the
    per-minute sums and ``requests`` the rows of the window ending at the run's latest request;
    ``totals`` the per-model sums of the whole run.
    """

    path: Path
    error: str | None = None
    runs: list[str] = field(default_factory=list)
    run: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    totals: pd.DataFrame = field(default_factory=pd.DataFrame)
    minutes: pd.DataFrame = field(default_factory=pd.DataFrame)
    requests: pd.DataFrame = field(default_factory=pd.DataFrame)
    latest_s: float | None = None
    read_s: float = 0.0


def read_store(path: Path, run: str | None = None, window_s: float | None = 3600.0) -> LiveStore:
    """One proxy run of the store at ``path`` (default: its latest), read-only.

    The file is opened with SQLite's ``mode=ro``: never written or created (as any WAL reader,
    SQLite may add its ``-wal``/``-shm`` side files), and safe while a running proxy writes it
    (WAL: readers do not wait for the writer). A missing file, another
    schema version or an unreadable file gives ``error`` instead of raising. ``window_s`` (None:
    the whole run) bounds the request rows read, counted back from the run's latest request.
    """
    out = LiveStore(path, read_s=time.time())
    if not path.is_file():
        out.error = f"no store at {path} yet"
        return out
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error as e:
        out.error = f"cannot open {path}: {e}"
        return out
    try:
        _read(conn, out, run, window_s)
    except sqlite3.Error as e:
        out.error = f"cannot read {path}: {e}"
    finally:
        conn.close()
    return out


def _read(conn: sqlite3.Connection, out: LiveStore, run: str | None, window_s: float | None) -> None:
    from kvern.proxy.store import ROLLUP_COLUMNS, SCHEMA_VERSION  # the proxy's imports: only when used

    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"meta", "requests", "minutes"} <= tables:
        out.error = f"{out.path} is not a kvern proxy store (no meta, requests and minutes tables)"
        return
    if version != SCHEMA_VERSION:
        out.error = (f"{out.path} has store schema {version}; this kvern reads schema {SCHEMA_VERSION} "
                     "(open it with the kvern that wrote it)")
        return
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key = 'last_run' OR key LIKE 'run:%'"))
    out.runs = sorted(k[4:-9] for k in meta if k.startswith("run:") and k.endswith(":settings"))
    if not out.runs:
        return
    out.run = run if run in out.runs else meta.get("last_run", out.runs[-1])
    out.settings = json.loads(meta.get(f"run:{out.run}:settings", "{}"))
    out.progress = json.loads(meta.get(f"run:{out.run}:progress", "{}"))
    sums = ", ".join(f"SUM({c}) AS {c}" for c in ROLLUP_COLUMNS)
    out.totals = pd.read_sql_query(f"SELECT model, {sums} FROM minutes WHERE run_id = ? GROUP BY model "
                                   "ORDER BY model", conn, params=(out.run,))
    out.latest_s = conn.execute("SELECT MAX(received_s) FROM requests WHERE run_id = ?",
                                (out.run,)).fetchone()[0]
    since = 0.0 if window_s is None or out.latest_s is None else out.latest_s - window_s
    out.minutes = pd.read_sql_query(
        f"SELECT minute, model, {', '.join(ROLLUP_COLUMNS)} FROM minutes WHERE run_id = ? AND minute >= ? "
        "ORDER BY minute, model", conn, params=(out.run, int(since // 60) * 60))
    out.requests = pd.read_sql_query(
        f"SELECT {', '.join(REQUEST_FIELDS)} FROM requests WHERE run_id = ? AND received_s >= ?",
        conn, params=(out.run, since))


def _rate(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _pct(values: pd.Series, q: float) -> float | None:
    v = values.dropna()
    return float(np.percentile(v, q)) if len(v) else None


def live_models(s: LiveStore) -> pd.DataFrame:
    """One row per model, and "all models" first when there are several: the run's counts and
    token hit rates (predicted; server-reported, over the requests that reported), and TTFT and
    proxy overhead percentiles of the window's served requests."""
    cols = ["model", "requests", "failed", "analyzed", "predicted hit rate", "reported",
            "server hit rate", "TTFT p50 ms", "TTFT p90 ms", "TTFT p99 ms", "overhead p50 ms",
            "overhead p99 ms"]
    if s.totals.empty:
        return pd.DataFrame(columns=cols)
    groups = [(m, s.totals[s.totals["model"] == m], s.requests[s.requests["model"] == m])
              for m in s.totals["model"]]
    if len(groups) > 1:
        groups.insert(0, ("all models", s.totals, s.requests))
    rows = []
    for model, t, r in groups:
        served = r[r["served"] == 1]
        rows.append({
            "model": model, "requests": int(t["requests"].sum()), "failed": int(t["failed"].sum()),
            "analyzed": int(t["analyzed"].sum()),
            "predicted hit rate": _rate(t["predicted_cached_tokens"].sum(), t["prompt_tokens"].sum()),
            "reported": int(t["reported"].sum()),
            "server hit rate": _rate(t["server_cached_tokens"].sum(), t["server_prompt_tokens"].sum()),
            "TTFT p50 ms": _pct(served["ttft_ms"], 50), "TTFT p90 ms": _pct(served["ttft_ms"], 90),
            "TTFT p99 ms": _pct(served["ttft_ms"], 99),
            "overhead p50 ms": _pct(served["overhead_ms"], 50),
            "overhead p99 ms": _pct(served["overhead_ms"], 99),
        })
    return pd.DataFrame(rows, columns=cols)


def _minute_time(epoch: pd.Series) -> pd.Series:
    return pd.to_datetime(epoch, unit="s")  # UTC, without a zone: the charts show it as is


def live_minutes(s: LiveStore) -> pd.DataFrame:
    """Per minute and model: requests, and the predicted and server-reported token hit rates
    (long format: one row per minute × model × source; the rate is None without tokens). Quiet
    minutes between the first and the last are there, with 0 requests."""
    cols = ["time", "model", "requests", "source", "token hit rate"]
    if s.minutes.empty:
        return pd.DataFrame(columns=cols)
    span = range(int(s.minutes["minute"].min()), int(s.minutes["minute"].max()) + 60, 60)
    grid = pd.MultiIndex.from_product([span, sorted(s.minutes["model"].unique())], names=["minute", "model"])
    m = s.minutes.set_index(["minute", "model"]).reindex(grid, fill_value=0).reset_index()
    rows = []
    for source, num, den in (("predicted", "predicted_cached_tokens", "prompt_tokens"),
                             ("server-reported", "server_cached_tokens", "server_prompt_tokens")):
        part = pd.DataFrame({"time": _minute_time(m["minute"]), "model": m["model"],
                             "requests": m["requests"], "source": source})
        part["token hit rate"] = (m[num] / m[den].where(m[den] > 0)).astype(float)
        rows.append(part)
    return pd.concat(rows, ignore_index=True)[cols]


def live_latency(s: LiveStore) -> pd.DataFrame:
    """Per minute and model: p50 and p99 of TTFT and proxy overhead over the served requests
    (long format: time, model, metric ("TTFT" or "overhead"), percentile, ms)."""
    cols = ["time", "model", "metric", "percentile", "ms"]
    r = s.requests[s.requests["served"] == 1] if not s.requests.empty else s.requests
    if r.empty:
        return pd.DataFrame(columns=cols)
    r = r.assign(minute=(r["received_s"] // 60 * 60)).rename(columns={"ttft_ms": "TTFT",
                                                                       "overhead_ms": "overhead"})
    q = r.groupby(["minute", "model"])[["TTFT", "overhead"]].quantile([0.5, 0.99])
    q.index.names = ["minute", "model", "q"]
    out = q.reset_index().melt(id_vars=["minute", "model", "q"], var_name="metric", value_name="ms").dropna()
    out["percentile"] = out["q"].map({0.5: "p50", 0.99: "p99"})
    out["time"] = _minute_time(out["minute"])
    return out[cols].sort_values(["metric", "model", "time", "percentile"], ignore_index=True)


def live_lag(s: LiveStore) -> dict[str, Any]:
    """How far the analytics are behind, as far as the store tells: the worker's queue (frames
    received, not yet analyzed), the delay from a request's end to its row (p50 and max over the
    window), when the worker last wrote, and requests caught up from the log or lost."""
    p = s.progress
    r = s.requests
    delay = (r["analyzed_s"] - r["done_s"].fillna(r["received_s"])) if not r.empty else pd.Series(dtype=float)
    updated = p.get("updated_s")
    return {
        "analyzed": int(p.get("analyzed_seq", -1)) + 1, "queued": int(p.get("queue_frames") or 0),
        "delay_p50_s": _pct(delay, 50), "delay_max_s": float(delay.max()) if len(delay) else None,
        "last_write_s_ago": max(0.0, s.read_s - updated) if updated else None,
        "caught_up": int(p.get("caught_up") or 0), "lost": int(p.get("lost") or 0),
        "ready": bool(p.get("ready")), "prediction_error": p.get("prediction_error"),
    }
