"""Write a run's report folder (docs/architecture.md §7), every file atomically.

``requests.parquet`` (request × policy × capacity), ``summary.parquet`` and ``summary.json``
(policy × capacity, then model × policy × capacity with several models; with the run's
settings) and the charts. ``summary.json`` is deterministic: sorted keys, no timestamps, no
absolute paths, so a rerun is byte-identical.

An interrupted run is written by the same code, marked: ``"partial": true`` and ``not_run``
(model × policy × capacity) in summary.json's settings, and the same under the ``kvern.report``
key of both Parquet files' schema metadata. A complete run carries neither.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from kvern.analysis.results import Analysis
from kvern.infra.files import write_json, write_parquet
from kvern.sim.run import RunResult


def write_report(result: RunResult, folder: str | Path, *, charts: bool = True) -> list[Path]:
    """Write the report files into ``folder``; return their paths (charts included)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "requests.parquet", folder / "summary.parquet", folder / "summary.json"]
    write_parquet(mark_partial(result.requests, result.settings), written[0])
    write_parquet(mark_partial(result.summary, result.settings), written[1])
    write_json(result.document(), written[2])
    if charts and (result.aggregate_rows() or not result.partial):  # a chart needs a row
        from kvern.report.charts import write_charts

        written.extend(write_charts(result, folder))
    return written


def write_analysis(analysis: Analysis, folder: str | Path) -> list[Path]:
    """``analysis.json`` and the analysis charts."""
    from kvern.report.analysis_charts import write_charts

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(analysis.to_dict(), folder / "analysis.json")
    return [folder / "analysis.json", *write_charts(analysis, folder)]


PARTIAL_KEY = b"kvern.report"
"""Schema metadata key of an interrupted run's Parquet files: JSON ``{"partial": true, "not_run": [...]}``."""


def mark_partial(table: pa.Table, settings: Mapping[str, Any]) -> pa.Table:
    """``table`` with the partial mark in its schema metadata if ``settings`` say the run was
    interrupted; unchanged otherwise."""
    if not settings.get("partial"):
        return table
    mark = {"partial": True, "not_run": settings.get("not_run", [])}
    meta = {**(table.schema.metadata or {}), PARTIAL_KEY: json.dumps(mark, sort_keys=True).encode()}
    return table.replace_schema_metadata(meta)
