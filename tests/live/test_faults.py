"""Faults: a refused connection, a server killed mid-run, a response slower than --timeout,
HTTP 429 and 500, a stream cut in the middle, and Ctrl-C. Nothing that finished is lost, and
the Parquet left behind is valid and marked partial when the run did not finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fault_proxy import FaultProxy
from llama_proc import SERVED_MODEL, Server, free_port
from synthetic import token_trace

from kvern.commands.live import run_live
from kvern.infra.config import Config
from kvern.infra.errors import BackendError, InputError, UsageError
from kvern.live.replay import LiveOptions
from kvern.live.sink import read_live

CFG = Config.model_validate({"live": {"backoff_s": 0.01}})


def prompts(n: int, length: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    head = rng.integers(1000, 30000, size=length)
    return [np.concatenate([head, rng.integers(1000, 30000, size=8 + i)]) for i in range(n)]


def options(url: str, out: Path, **kw: object) -> LiveOptions:
    base: dict[str, object] = {"backend": url, "output_dir": out, "concurrency": 1, "profile": "llamacpp",
                               "served_model": SERVED_MODEL, "retries": 2}
    return LiveOptions(**{**base, **kw})  # type: ignore[arg-type]


def column(out: Path, name: str) -> list:
    return read_live(out / "live.parquet")[0].column(name).to_pylist()


def rows_done(out: Path) -> int:
    """Rows in the live.parquet on disk (written before the first request, then every second)."""
    try:
        return read_live(out / "live.parquet")[0].num_rows
    except (FileNotFoundError, InputError):
        return 0


def test_connection_refused_ends_the_run_with_partial_results(tmp_path: Path) -> None:
    trace = token_trace(tmp_path / "t.parquet", prompts(10), [2] * 10)
    out = tmp_path / "o"
    with pytest.raises(BackendError, match="unreachable"):
        run_live(trace, CFG, options(f"http://127.0.0.1:{free_port()}", out, retries=1))
    live, meta = read_live(out / "live.parquet")
    assert meta["partial"] is True
    assert live.num_rows == 3  # three requests in a row could not connect: stop
    assert live.column("status").to_pylist() == [0, 0, 0]
    assert live.column("retries").to_pylist() == [1, 1, 1]
    assert all("cannot connect" in e for e in live.column("error").to_pylist())
    rec = pq.read_table(out / "reconcile.parquet")
    assert rec.column("cause").to_pylist() == ["request failed"] * 3
    assert not (out / "ttft_vs_cached.png").exists()  # nothing to plot


def test_a_run_with_nothing_to_plot_removes_an_earlier_chart(tmp_path: Path) -> None:
    trace = token_trace(tmp_path / "t.parquet", prompts(3), [2] * 3)
    out = tmp_path / "o"
    out.mkdir()
    (out / "ttft_vs_cached.png").write_bytes(b"an earlier run's chart")
    with pytest.raises(BackendError):
        run_live(trace, CFG, options(f"http://127.0.0.1:{free_port()}", out, retries=0))
    assert not (out / "ttft_vs_cached.png").exists()


def test_a_bad_capacity_fails_before_anything_is_sent(tmp_path: Path) -> None:
    # Checked once the trace is loaded, not after the run (the port has no server: nothing sent).
    trace = token_trace(tmp_path / "t.parquet", prompts(2), [2] * 2)
    url = f"http://127.0.0.1:{free_port()}"
    cases = [({"capacity": "abc"}, "cannot read 'abc'"),
             ({"capacity": "1GiB"}, "needs the KV geometry of model"),
             ({"capacity": "1GiB", "profile": "vllm"}, "needs the KV geometry of model")]
    for kw, message in cases:
        with pytest.raises(UsageError, match=message):
            run_live(trace, CFG, options(url, tmp_path / "o", **kw))
        assert not (tmp_path / "o").exists()


@pytest.mark.live
def test_429_and_500_are_retried_and_a_persistent_500_is_recorded(llama_server, tmp_path: Path) -> None:
    server: Server = llama_server()
    # POSTs through the proxy: 0 -> 429 (request 0 retried), 2, 3, 4 -> 500 (request 1 gives up).
    proxy = FaultProxy(server.port, {0: "429", 2: "500", 3: "500", 4: "500"}).start()
    try:
        out = tmp_path / "o"
        summary = run_live(token_trace(tmp_path / "t.parquet", prompts(5), [2] * 5), CFG,
                           options(proxy.url, out)).summary
    finally:
        proxy.stop()
    assert column(out, "ok") == [True, False, True, True, True]
    assert column(out, "retries") == [1, 2, 0, 0, 0]
    assert "HTTP 429" in column(out, "retry_error")[0]
    assert column(out, "status") == [200, 500, 200, 200, 200]
    assert "HTTP 500" in column(out, "error")[1]
    # The failed request never reached the server, so it does not shift the prediction.
    assert summary["compared"] == 4 and summary["agreed"] == 4


@pytest.mark.live
def test_a_cut_stream_is_retried_and_the_gap_blamed_on_the_retry(llama_server, tmp_path: Path) -> None:
    server: Server = llama_server()
    proxy = FaultProxy(server.port, {1: "cut"}).start()
    try:
        out = tmp_path / "o"
        run_live(token_trace(tmp_path / "t.parquet", prompts(4), [16] * 4), CFG, options(proxy.url, out))
    finally:
        proxy.stop()
    assert column(out, "ok") == [True] * 4
    assert column(out, "retries") == [0, 1, 0, 0]
    rec = pq.read_table(out / "reconcile.parquet").to_pylist()
    # The cut attempt had the server compute the whole prompt: the retry finds it cached.
    assert rec[1]["observed_cached"] == rec[1]["prompt_tokens"] - 1
    assert rec[1]["agree"] is False and rec[1]["cause"].startswith("retried")


@pytest.mark.live
def test_slower_than_timeout_fails_that_request_only(llama_server, tmp_path: Path) -> None:
    server: Server = llama_server()
    proxy = FaultProxy(server.port, {0: "slow"}, slow_s=2.0).start()
    try:
        out = tmp_path / "o"
        run_live(token_trace(tmp_path / "t.parquet", prompts(3), [2] * 3), CFG,
                 options(proxy.url, out, retries=0, timeout_s=1.0))
    finally:
        proxy.stop()
    assert column(out, "ok") == [False, True, True]
    assert "--timeout 1s" in column(out, "error")[0]
    assert column(out, "status")[0] == 0


@pytest.mark.live
def test_server_killed_mid_run_keeps_what_finished(llama_server, tmp_path: Path) -> None:
    server: Server = llama_server()
    out = tmp_path / "o"
    trace = token_trace(tmp_path / "t.parquet", prompts(200), [48] * 200)

    def kill_after_first_results() -> None:
        deadline = time.monotonic() + 120
        while rows_done(out) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.proc.kill()

    killer = threading.Thread(target=kill_after_first_results)
    killer.start()
    with pytest.raises(BackendError, match="unreachable"):
        run_live(trace, CFG, options(server.url, out, retries=1))
    killer.join()
    live, meta = read_live(out / "live.parquet")
    assert meta["partial"] is True
    ok = live.column("ok").to_pylist()
    assert 1 <= sum(ok) < 200
    assert ok[:sum(ok)] == [True] * sum(ok)  # sequential: everything before the kill finished
    assert ok[-3:] == [False] * 3
    rec = pq.read_table(out / "reconcile.parquet")
    assert rec.num_rows == live.num_rows


@pytest.mark.live
def test_ctrl_c_exits_130_with_a_valid_partial_parquet(llama_server, tmp_path: Path) -> None:
    server: Server = llama_server()
    out = tmp_path / "o"
    trace = token_trace(tmp_path / "t.parquet", prompts(300), [32] * 300)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvern", "replay", str(trace), "--backend", server.url, "--profile",
         "llamacpp", "--concurrency", "1", "--served-model", SERVED_MODEL, "-o", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + 120
        while rows_done(out) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:  # a replay that ignored the signal must not outlive the test
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err.decode()
    assert b"interrupted" in err
    live, meta = read_live(out / "live.parquet")
    assert meta["partial"] is True and meta["stop_reason"] == "interrupted"
    assert 1 <= live.num_rows < 300
    assert all(live.column("ok").to_pylist())
    assert pq.read_table(out / "reconcile.parquet").num_rows == live.num_rows


@pytest.mark.live
def test_a_run_where_every_request_fails_is_an_error_results_kept(llama_server, tmp_path: Path) -> None:
    # A wrong key, URL or model name: the server answers, but nothing is measured.
    server: Server = llama_server()
    proxy = FaultProxy(server.port, {0: "500", 1: "500", 2: "500"}).start()
    try:
        out = tmp_path / "o"
        with pytest.raises(BackendError, match=r"no request succeeded \(3 sent; the first error: HTTP 500"):
            run_live(token_trace(tmp_path / "t.parquet", prompts(3), [2] * 3), CFG,
                     options(proxy.url, out, retries=0))
    finally:
        proxy.stop()
    assert column(out, "ok") == [False, False, False]
    assert (out / "reconcile.parquet").exists() and (out / "live_summary.json").exists()


@pytest.mark.live
@pytest.mark.parametrize("source", ["--api-key", "environment"])
def test_a_server_that_echoes_the_api_key_never_gets_it_written_or_printed(
        llama_server, tmp_path: Path, source: str) -> None:
    """A hostile 401 body carries the Authorization header back; the key must appear nowhere:
    not in live.parquet, reconcile.parquet, the summary, report.html, stdout or stderr."""
    secret = "kv-test-Zq81xX-secret-4471"  # no sk- prefix: scrubbed because it is the key, not by shape
    server: Server = llama_server()
    proxy = FaultProxy(server.port, {0: "echo", 1: "echo", 2: "echo"}).start()
    trace = token_trace(tmp_path / "t.parquet", prompts(3), [2] * 3)
    out = tmp_path / "o"
    args = [sys.executable, "-m", "kvern", "replay", str(trace), "--backend", proxy.url, "--profile",
            "llamacpp", "--concurrency", "1", "--retries", "0", "--served-model", SERVED_MODEL,
            "-o", str(out)]
    env = {**os.environ, "KVERN_TEST_ECHO_KEY": secret}
    cfg = tmp_path / "config.yaml"
    cfg.write_text("live:\n  api_key_env: KVERN_TEST_ECHO_KEY\n")
    if source == "--api-key":
        args += ["--api-key", secret]
        env.pop("KVERN_TEST_ECHO_KEY")
    try:
        done = subprocess.run([*args, "--config", str(cfg)], capture_output=True, env=env, timeout=120,
                              cwd=tmp_path)
    finally:
        proxy.stop()
    assert done.returncode == 2, done.stderr  # every request failed: an error, results kept
    assert proxy.posts == 3
    errors = column(out, "error")
    assert all(e and "[redacted]" in e for e in errors), errors  # the echo was recorded, scrubbed
    for blob in [done.stdout, done.stderr, *(f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())]:
        assert secret.encode() not in blob
