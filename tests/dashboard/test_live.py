"""The Live page under Streamlit's AppTest, on stores written by the proxy's own store writer
(``kvern.proxy.store``) with known rows, so every number shown is checked."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit", reason="no dashboard extra: pip install 'kvern[dashboard]'")
from streamlit.testing.v1 import AppTest

from kvern.dashboard.app import parse
from kvern.dashboard.data import live_latency, live_minutes, read_store
from kvern.dashboard.launch import APP, store_file, streamlit_command
from kvern.proxy import store

TIMEOUT = 60
T0 = 1_733_130_000.0  # a minute boundary


def _row(run: str, seq: int, model: str, at: float, *, served: bool = True, ttft: float | None = None,
         overhead: float | None = None, prompt: int | None = None, predicted: int | None = None,
         server: tuple[int, int] | None = None) -> dict:
    return {"run_id": run, "seq": seq, "request_id": f"{run}-{seq}", "model": model,
            "endpoint": "/v1/chat/completions", "status": 200 if served else 502,
            "outcome": "ok" if served else "upstream_unreachable", "served": int(served), "stream": 0,
            "received_s": at, "first_byte_s": at + 0.1 if served else None, "done_s": at + 0.2,
            "ttft_ms": ttft, "e2e_ms": ttft, "overhead_ms": overhead, "prompt_tokens": prompt,
            "predicted_cached_tokens": predicted, "server_prompt_tokens": server[0] if server else None,
            "server_cached_tokens": server[1] if server else None, "completion_tokens": 4 if served else None,
            "finish_reason": "length" if served else None, "error": None, "analyzed_s": at + 0.7}


def write_store(path: Path) -> Path:
    """Two runs; the latest (R1) has alpha (3 requests, minute 0) and beta (2, minute 1, one failed)."""
    store.create(path, "R0", {"upstream": "http://old", "profile": "vllm", "policy": "lru", "capacity": "1"})
    w = store.StoreWriter(path, "R0")
    w.add(_row("R0", 0, "alpha", T0 - 3600, ttft=50.0, overhead=1.0, prompt=10, predicted=0, server=(10, 0)))
    w.close()
    store.create(path, "R1", {"upstream": "http://127.0.0.1:9", "profile": "llamacpp", "policy": "lru",
                              "capacity": "4096"})
    w = store.StoreWriter(path, "R1")
    for i, (ttft, predicted) in enumerate(((100.0, 60), (200.0, 60), (300.0, 0))):
        w.add(_row("R1", i, "alpha", T0 + 10 * i, ttft=ttft, overhead=1.0 + i, prompt=100,
                   predicted=predicted, server=(100, 50)))
    w.add(_row("R1", 3, "beta", T0 + 70, ttft=400.0, overhead=4.0, prompt=200, predicted=100))  # no usage
    w.add(_row("R1", 4, "beta", T0 + 80, served=False))
    w.progress = {"analyzed_seq": 4, "analyzed": 4, "caught_up": 1, "lost": 0, "queue_frames": 2,
                  "updated_s": time.time(), "ready": True, "prediction_error": None}
    w.close()
    return path


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return write_store(tmp_path / "analytics.sqlite")


def _page(path: str | None) -> None:
    from pathlib import Path

    from kvern.dashboard.pages import live

    live.render(Path(path) if path else None)


def _run(path: Path | None) -> AppTest:
    at = AppTest.from_function(_page, args=(str(path) if path else None,), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_live_numbers_per_model(store_path: Path) -> None:
    at = _run(store_path)
    m = _metrics(at)
    assert m["requests"] == "5" and m["failed"] == "1"
    assert m["predicted token hit rate"] == "44.00%"  # (60+60+0+100) / (3·100+200)
    assert m["server-reported token hit rate"] == "50.00%"  # alpha only: beta's stream had no usage
    assert m["TTFT p50 (1 hour)"] == "250.0 ms"  # 100, 200, 300, 400 (the failed one has none)
    assert m["TTFT p99 (1 hour)"] == "397.0 ms"
    assert m["proxy overhead p50 (1 hour)"] == "2.5 ms"
    assert m["analyzed"] == "5" and m["queued in the worker"] == "2"
    assert m["request end → analyzed, p50"] == "0.50 s"
    table = at.dataframe[0].value.set_index("model")
    assert list(table.index) == ["all models", "alpha", "beta"]
    assert table.loc["alpha", "predicted hit rate"] == pytest.approx(0.4)
    assert table.loc["alpha", "TTFT p50 ms"] == 200.0
    assert table.loc["alpha", "overhead p99 ms"] == pytest.approx(2.98)
    assert table.loc["beta", "failed"] == 1 and table.loc["beta", "reported"] == 0
    assert pd.isna(table.loc["beta", "server hit rate"])
    assert len(at.get("vega_lite_chart")) == 4  # requests, hit rates, TTFT, overhead
    assert "run R1" in at.caption[0].value and "llamacpp" in at.caption[0].value
    assert "not live" not in at.caption[0].value


def test_live_series_per_minute(store_path: Path) -> None:
    s = read_store(store_path)
    minutes = live_minutes(s)
    predicted = minutes[minutes["source"] == "predicted"].set_index(["model", "time"])
    assert len(predicted) == 4  # 2 minutes × 2 models: a quiet minute counts 0 requests
    t0, t1 = pd.Timestamp(T0, unit="s"), pd.Timestamp(T0 + 60, unit="s")
    assert predicted.loc[("alpha", t0), "requests"] == 3 and predicted.loc[("alpha", t1), "requests"] == 0
    assert predicted.loc[("alpha", t0), "token hit rate"] == pytest.approx(0.4)
    assert pd.isna(predicted.loc[("alpha", t1), "token hit rate"])
    latency = live_latency(s).set_index(["metric", "model", "percentile"])["ms"]
    assert latency[("TTFT", "alpha", "p50")] == 200.0 and latency[("overhead", "beta", "p99")] == 4.0
    assert len(latency) == 8
    assert len(read_store(store_path, window_s=30).requests) == 2  # the last 30 s before the latest request


def test_live_other_run_and_window(store_path: Path) -> None:
    at = _run(store_path)
    assert at.selectbox(key="live_run").options == ["R1", "R0"]
    at.selectbox(key="live_run").select("R0").run()
    assert _metrics(at)["requests"] == "1" and "not live" not in at.caption[0].value
    at.selectbox(key="live_run").select("R1").run()
    at.radio(key="live_window").set_value("15 min").run()
    assert not at.exception and _metrics(at)["TTFT p50 (15 min)"] == "250.0 ms"
    at.toggle(key="live_auto").set_value(False).run()
    assert not at.exception and _metrics(at)["requests"] == "5"


def test_live_follows_the_store(tmp_path: Path) -> None:
    """A store that appears, then grows, read again at every refresh (the timer reruns the same code)."""
    path = tmp_path / "logs" / "analytics.sqlite"
    at = _run(path)
    assert "no store at" in at.warning[0].value and "--store" in at.warning[0].value
    store.create(path, "R1", {"upstream": "u"})
    at.run()
    assert "No request analyzed yet" in at.info[0].value
    w = store.StoreWriter(path, "R1")
    w.add(_row("R1", 0, "alpha", T0, ttft=10.0, overhead=1.0, prompt=10, predicted=5, server=(10, 5)))
    w.flush()  # the writer stays open, as a running proxy's does
    at.run()
    assert _metrics(at)["requests"] == "1"
    w.add(_row("R1", 1, "alpha", T0 + 1, ttft=10.0, overhead=1.0, prompt=10, predicted=5, server=(10, 5)))
    w.flush()
    at.run()
    assert _metrics(at)["requests"] == "2"
    w.close()


def test_live_bad_stores(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.executescript(store.SCHEMA + "PRAGMA user_version = 7;")
    conn.close()
    assert "store schema 7" in _run(other).warning[0].value
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    assert "not a kvern proxy store" in _run(empty).warning[0].value
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 100)
    assert "cannot read" in read_store(junk).error  # type: ignore[operator]
    assert "cannot read" in _run(junk).warning[0].value
    assert not list(tmp_path.glob("*-journal"))


def test_live_without_a_store_says_how() -> None:
    at = _run(None)
    assert "--store" in at.info[0].value and "analytics.sqlite" in at.info[0].value


def test_the_app_with_a_store_opens_on_live(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cmd = streamlit_command([], port=8599, host="127.0.0.1", store=store_path.parent)
    args = cmd[cmd.index("--") + 1:]
    assert args == ["--store", str(store_path.resolve())]  # a log folder means its analytics.sqlite
    assert parse(args) == ([], str(store_path.resolve()))
    assert store_file(store_path) == store_path.resolve()
    monkeypatch.setattr(sys, "argv", [str(APP), *args])
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception and at.title[0].value == "Live"
    assert _metrics(at)["requests"] == "5"


def test_dashboard_store_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--store`` reaches the app; without report folders a missing default ``reports/`` is skipped."""
    from typer.testing import CliRunner

    import kvern.dashboard.launch as launch
    from kvern.cli import app

    commands: list[list[str]] = []
    monkeypatch.setattr(launch.subprocess, "call", lambda cmd: commands.append(cmd) or 0)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "proxy-logs").mkdir()
    result = CliRunner().invoke(app, ["dashboard", "--store", "proxy-logs", "--port", "8599"])
    assert result.exit_code == 0, result.output
    assert commands[0][commands[0].index("--") + 1:] == [
        "--store", str((tmp_path / "proxy-logs" / "analytics.sqlite").resolve())]
    (tmp_path / "reports").mkdir()
    CliRunner().invoke(app, ["dashboard", "--store", "s.sqlite"])
    assert commands[1][-1] == str((tmp_path / "reports").resolve())
