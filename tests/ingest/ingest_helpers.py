"""Small helpers for ingest tests: write a JSONL log, ingest it with defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kvern.infra.config import Config
from kvern.ingest.pipeline import ingest
from kvern.ingest.trace import Trace


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def ingest_rows(tmp_path: Path, rows: list[Any], cfg: Config | None = None, **kw: Any) -> Trace:
    return ingest(write_jsonl(tmp_path / "log.jsonl", rows), cfg or Config(), **kw)
