"""Fixtures for every test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cwd_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the ingest cache out of the user's folder, but share it across one test session."""
    monkeypatch.setenv("KVERN_INGEST_CACHE", str(tmp_path_factory.getbasetemp() / "ingest-cache"))
