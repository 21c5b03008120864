"""Live replay against a real llama-server: the llamacpp profile predicts its cached tokens exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from llama_proc import SERVED_MODEL, Server
from synthetic import shared_prefix_prompts, token_trace
from typer.testing import CliRunner

from kvern.cli import app
from kvern.commands.live import run_live
from kvern.infra.config import Config
from kvern.infra.errors import BackendError
from kvern.ingest.blocks import token_block_keys
from kvern.ingest.trace import TRACE_SCHEMA, Trace, TraceMeta, with_meta
from kvern.live.reconcile import prompts_of, served_order
from kvern.live.replay import LiveOptions
from kvern.live.sink import read_live
from kvern.sim.profiles.llamacpp import LlamaServerConfig, predict

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parents[2]
CHAT_SAMPLE = ROOT / "traces" / "chat_sample.jsonl"


def replay_sequential(server: Server, trace_path: Path, out_dir: Path) -> dict:
    opts = LiveOptions(backend=server.url, output_dir=out_dir, concurrency=1, profile="llamacpp",
                       served_model=SERVED_MODEL)
    return run_live(trace_path, Config(), opts).summary


@pytest.mark.parametrize("slots", [1, 3])
def test_llamacpp_profile_predicts_every_request(llama_server, tmp_path: Path, slots: int) -> None:
    server = llama_server(slots=slots, ctx_per_slot=2048)
    prompts, outputs = shared_prefix_prompts(seed=slots, n=60)
    summary = replay_sequential(server, token_trace(tmp_path / "t.parquet", prompts, outputs), tmp_path / "o")
    assert summary["succeeded"] == 60
    assert summary["compared"] == 60
    assert summary["agreed"] == 60, summary["gap_causes"]
    assert summary["observed_cached_tokens"] > 0
    # llama-server's own counters (--metrics) tell the same story over the run.
    assert summary["server_metrics_engine"] == "llamacpp"
    assert summary["server_token_hit_rate"] == pytest.approx(summary["observed_token_hit_rate"])

    # The test has teeth: a model without the host cache, or with the wrong slot count, misses.
    live, _ = read_live(tmp_path / "o" / "live.parquet")
    observed = np.array(live.column("cached_tokens").to_pylist())
    gen = live.column("completion_tokens").to_pylist()
    for wrong in (LlamaServerConfig(slots=slots, cache_tokens=0), LlamaServerConfig(slots=slots + 1)):
        assert not np.array_equal(predict(prompts, gen, wrong), observed)


def test_server_counts_match_the_trace_and_timings(llama_server, tmp_path: Path) -> None:
    server = llama_server()
    prompts, outputs = shared_prefix_prompts(seed=7, n=12)
    replay_sequential(server, token_trace(tmp_path / "t.parquet", prompts, outputs), tmp_path / "o")
    live, meta = read_live(tmp_path / "o" / "live.parquet")
    assert meta["partial"] is False
    assert live.column("server_prompt_tokens").to_pylist() == [len(p) for p in prompts]
    assert live.column("completion_tokens").to_pylist() == outputs
    assert live.column("timings_cache_n").to_pylist() == live.column("cached_tokens").to_pylist()
    cached = np.array(live.column("cached_tokens").to_pylist())
    assert live.column("timings_prompt_n").to_pylist() == ([len(p) for p in prompts] - cached).tolist()
    assert all(t is not None and t > 0 for t in live.column("ttft_s").to_pylist())


def test_hash_id_trace_prefixes_stay_shared(llama_server, tmp_path: Path) -> None:
    """A Mooncake-style trace: synthetic ids per hash id keep shared prefixes shared on the server."""
    server = llama_server()
    log = tmp_path / "mooncake.jsonl"
    log.write_text("\n".join([
        '{"timestamp": 0, "input_length": 40, "output_length": 2, "hash_ids": [1, 2, 3]}',
        '{"timestamp": 1, "input_length": 50, "output_length": 2, "hash_ids": [1, 2, 3, 4]}',
        '{"timestamp": 2, "input_length": 30, "output_length": 2, "hash_ids": [1, 2]}',
    ]) + "\n")
    cfg = Config.model_validate({"ingest": {"trace_block_size": 16}})
    opts = LiveOptions(backend=server.url, output_dir=tmp_path / "o", concurrency=1, profile="llamacpp",
                       served_model=SERVED_MODEL)
    summary = run_live(log, cfg, opts).summary
    live, _ = read_live(tmp_path / "o" / "live.parquet")
    # 40 new; then 40 of 50 (the first three blocks, the last one partial); then a prefix of 30.
    assert live.column("cached_tokens").to_pylist() == [0, 40, 29]
    assert summary["agreed"] == 3


def test_chat_sample_end_to_end_through_the_cli(llama_server, tmp_path: Path) -> None:
    """The issue's acceptance run: every request of the chat sample agrees with the prediction."""
    server = llama_server(ctx_per_slot=8192)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["replay", str(CHAT_SAMPLE), "--backend", server.url, "--profile",
                                      "llamacpp", "--concurrency", "1", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    rec = pq.read_table(out / "reconcile.parquet")
    assert rec.num_rows == 409
    assert rec.column("agree").to_pylist() == [True] * 409
    live, meta = read_live(out / "live.parquet")
    assert meta["partial"] is False
    assert sum(live.column("cached_tokens").to_pylist()) > 0.5 * sum(live.column("prompt_tokens").to_pylist())
    assert live.column("server_prompt_tokens").to_pylist() == live.column("prompt_tokens").to_pylist()
    assert sum(live.column("retries").to_pylist()) == 0  # no stale keep-alive connections
    assert (out / "ttft_vs_cached.png").stat().st_size > 10_000
    assert (out / "live_summary.json").is_file()


def test_prediction_uses_the_served_order_and_prompts(tmp_path: Path) -> None:
    """No server needed: what reconcile feeds the model (order by first send, ids per row)."""
    prompts = [np.arange(5), np.arange(7)]
    trace = Trace(with_meta(pa.table({
        "request_id": ["a", "b"], "arrival_s": [0.0, 1.0], "model": ["m", "m"], "session_id": [None, None],
        "prompt_tokens": [5, 7], "output_tokens": [1, 1],
        "block_keys": [token_block_keys("m", p, 16) for p in prompts],
        "token_ids": [p.tolist() for p in prompts]}, schema=TRACE_SCHEMA), TraceMeta(16)), TraceMeta(16))
    live = pa.table({"ok": [True, False, True], "sent_s": [0.5, 0.1, 0.2]})
    assert served_order(live).tolist() == [2, 0]
    assert [p.tolist() for p in prompts_of(trace, np.array([1, 0]))] == [list(range(7)), list(range(5))]


def test_api_key_is_sent_from_the_configured_variable_and_never_written(
        llama_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-kvern-test-0123456789"
    server = llama_server(extra=("--api-key", secret))
    prompts, outputs = shared_prefix_prompts(seed=3, n=4)
    trace = token_trace(tmp_path / "t.parquet", prompts, outputs)
    cfg = Config.model_validate({"live": {"api_key_env": "KVERN_TEST_KEY"}})
    monkeypatch.setenv("KVERN_TEST_KEY", secret)
    summary = run_live(trace, cfg, LiveOptions(backend=server.url, output_dir=tmp_path / "with",
                                               concurrency=1, profile="llamacpp")).summary
    assert summary["succeeded"] == 4 and summary["agreed"] == 4
    monkeypatch.delenv("KVERN_TEST_KEY")
    with pytest.raises(BackendError, match=r"no request succeeded .* HTTP 401"):  # measured nothing
        run_live(trace, cfg, LiveOptions(backend=server.url, output_dir=tmp_path / "without",
                                         concurrency=1, profile="llamacpp", retries=0))
    live, _ = read_live(tmp_path / "without" / "live.parquet")
    assert live.column("status").to_pylist() == [401] * 4  # not retried: a retry cannot help
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f


def test_vllm_profile_on_llama_server_names_block_rounding(llama_server, tmp_path: Path) -> None:
    """The wrong profile for this server: its gaps are the vLLM block rule, and say so."""
    server = llama_server()
    out = tmp_path / "o"
    opts = LiveOptions(backend=server.url, output_dir=out, concurrency=1, profile="vllm",
                       capacity="100000", max_requests=25, served_model=SERVED_MODEL)
    summary = run_live(CHAT_SAMPLE, Config(), opts).summary
    assert summary["compared"] == 25
    assert summary["agreed"] < 25
    rec = pq.read_table(out / "reconcile.parquet").to_pylist()
    for r in rec:
        if not r["agree"]:
            assert r["cause"] is not None
            assert r["observed_cached"] > r["predicted_cached"]  # llama.cpp keeps partial blocks
    assert summary["gap_causes"].get("block rounding", 0) > 0


def test_speedup_follows_the_log_timestamps(llama_server, tmp_path: Path) -> None:
    server = llama_server()
    prompts, outputs = shared_prefix_prompts(seed=5, n=4)
    trace = token_trace(tmp_path / "t.parquet", prompts, outputs)  # arrivals 0, 1, 2, 3 s
    opts = LiveOptions(backend=server.url, output_dir=tmp_path / "o", speedup=20.0, profile="llamacpp",
                       served_model=SERVED_MODEL)
    run_live(trace, Config(), opts)
    live, meta = read_live(tmp_path / "o" / "live.parquet")
    assert meta["pacing"] == "log timestamps ×20"
    assert live.column("scheduled_s").to_pylist() == [0.0, 0.05, 0.1, 0.15]
    sent = live.column("sent_s").to_pylist()
    assert all(s >= sched for s, sched in zip(sent, [0.0, 0.05, 0.1, 0.15], strict=True))


def test_duration_stops_sending_and_is_not_partial(llama_server, tmp_path: Path) -> None:
    server = llama_server()
    prompts, outputs = shared_prefix_prompts(seed=6, n=4)
    trace = token_trace(tmp_path / "t.parquet", prompts, outputs)  # arrivals 0, 1, 2, 3 s
    opts = LiveOptions(backend=server.url, output_dir=tmp_path / "o", speedup=1.0, duration_s=1.5,
                       profile="llamacpp", served_model=SERVED_MODEL)
    summary = run_live(trace, Config(), opts).summary
    live, meta = read_live(tmp_path / "o" / "live.parquet")
    assert live.column("row").to_pylist() == [0, 1]  # the request due at 2 s is past --duration
    assert meta["partial"] is False and meta["stop_reason"] == "duration"
    assert summary["agreed"] == 2


def test_concurrent_run_blames_its_gaps_on_concurrency(llama_server, tmp_path: Path) -> None:
    """Four in flight on three slots: the server interleaves, so only the overlap can explain gaps."""
    server = llama_server(slots=3, ctx_per_slot=2048)
    prompts, outputs = shared_prefix_prompts(seed=11, n=40)
    trace = token_trace(tmp_path / "t.parquet", prompts, [o + 24 for o in outputs])
    opts = LiveOptions(backend=server.url, output_dir=tmp_path / "o", concurrency=4, profile="llamacpp",
                       served_model=SERVED_MODEL)
    summary = run_live(trace, Config(), opts).summary
    assert summary["succeeded"] == 40
    rec = pq.read_table(tmp_path / "o" / "reconcile.parquet").to_pylist()
    gaps = [r for r in rec if r["agree"] is False]
    assert all(r["cause"].startswith("concurrency") for r in gaps), gaps
    assert set(summary["gap_causes"]) == {"concurrency"}
    assert summary["retries"] == 0
