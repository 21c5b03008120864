"""Fixtures for every test, and hypothesis's profile.

Under CI (``CI`` set, as CI sets it) hypothesis draws the same examples every run, so a
submission's verdict does not depend on which random cases one run happened to try; locally it
explores new ones each run (run with ``CI=1`` to reproduce CI's draw).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _isolated_cwd_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the ingest cache out of the user's folder, but share it across one test session."""
    monkeypatch.setenv("KVERN_INGEST_CACHE", str(tmp_path_factory.getbasetemp() / "ingest-cache"))


@pytest.fixture(scope="session")
def report_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Report folders of every kind (compare, sweep, analyze, gate, live), written once per
    session by the CLI (tests/report_folders.py); the report.html and dashboard tests read them."""
    from tests.report_folders import make_folders

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KVERN_INGEST_CACHE", str(tmp_path_factory.getbasetemp() / "ingest-cache"))
        return make_folders(tmp_path_factory.mktemp("reports"))
