"""Shared fixtures: the real default tokenizer, small traces, the CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_TRACES = ROOT.parent / "shared" / "traces"
MOONCAKE = SHARED_TRACES / "mooncake" / "conversation_trace.jsonl"


@pytest.fixture(autouse=True)
def _isolated_cwd_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the ingest cache out of the user's folder, but share it across one test session."""
    monkeypatch.setenv("KVERN_INGEST_CACHE", str(tmp_path_factory.getbasetemp() / "ingest-cache"))
