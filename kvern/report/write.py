"""Write a run's report folder (DESIGN.md §7), every file atomically.

``requests.parquet`` (request × policy × capacity), ``summary.parquet`` and ``summary.json``
(policy × capacity, with the run's settings) and the charts. ``summary.json`` is
deterministic: sorted keys, no timestamps, no absolute paths, so a rerun is byte-identical.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kvern.report.atomic import write_json, write_parquet
from kvern.sim.run import RunResult

SUMMARY_VERSION = 1


def summary_document(result: RunResult) -> dict[str, Any]:
    rows = [{k: _clean(v) for k, v in row.items()} for row in result.summary.to_pylist()]
    return {"version": SUMMARY_VERSION, "settings": result.settings, "summary": rows}


def write_report(result: RunResult, folder: str | Path, *, charts: bool = True) -> list[Path]:
    """Write the report files into ``folder``; return their paths (charts included)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "requests.parquet", folder / "summary.parquet", folder / "summary.json"]
    write_parquet(result.requests, written[0])
    write_parquet(result.summary, written[1])
    write_json(summary_document(result), written[2])
    if charts:
        from kvern.report.charts import write_charts

        written.extend(write_charts(result, folder))
    return written


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
