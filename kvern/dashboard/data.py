"""What the dashboard's pages read: report folders (``kvern.report.folder``) and, for the
interactive charts, their Parquet files as DataFrames.

Plain functions, no Streamlit, so they are tested and reused without a running app. Parquet
reads are cached per (file, modification time): a rerun of the command shows up, an unchanged
file is read once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

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
