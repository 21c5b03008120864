"""The live pieces that need no server: metrics parsing, the sink, bodies, reconciliation rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvern.infra.errors import InputError, UsageError
from kvern.live.bodies import CHAT_PATH, chat_bodies, synthetic_prompt
from kvern.live.client import PROMPT_PLACEHOLDER, LiveResult, RetryPolicy, redact_prompt
from kvern.live.prometheus import ServerCacheStats, cache_stats, parse_metrics
from kvern.live.reconcile import (
    CAUSE_BLOCK,
    CAUSE_CONCURRENCY,
    CAUSE_EVICTION,
    CAUSE_LAST_TOKEN,
    CAUSE_MORE,
    _cause,
    _overlaps,
)
from kvern.live.replay import public_url, server_root
from kvern.live.sink import LIVE_SCHEMA, LiveSink, read_live

VLLM_METRICS = """\
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
vllm:prefix_cache_queries_total{engine="1",model_name="m"} 500.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 600.0
vllm:prefix_cache_hits_total{engine="1",model_name="m"} 150.0
vllm:num_requests_running{model_name="m"} 2.0
"""


def test_parse_metrics_sums_labelled_series() -> None:
    m = parse_metrics(VLLM_METRICS)
    assert m["vllm:prefix_cache_queries_total"] == 1500.0
    assert m["vllm:prefix_cache_hits_total"] == 750.0
    text = "llamacpp:prompt_tokens_total 12\nbad line here\n"
    assert parse_metrics(text) == {"llamacpp:prompt_tokens_total": 12.0}


def test_cache_stats_is_the_growth_over_the_run() -> None:
    before = parse_metrics(VLLM_METRICS)
    after = {**before, "vllm:prefix_cache_queries_total": 2500.0, "vllm:prefix_cache_hits_total": 1500.0}
    assert cache_stats(before, after) == ServerCacheStats("vllm", 750.0, 1000.0)
    assert cache_stats(before, after).hit_rate == 0.75  # type: ignore[union-attr]
    llama = {"llamacpp:prompt_tokens_total": 100.0, "llamacpp:prompt_tokens_cached_total": 300.0}
    grown = {"llamacpp:prompt_tokens_total": 150.0, "llamacpp:prompt_tokens_cached_total": 450.0}
    assert cache_stats(llama, grown) == ServerCacheStats("llamacpp", 150.0, 200.0)
    assert cache_stats(None, after) is None
    assert cache_stats({"x": 1.0}, {"x": 2.0}) is None


def result(row: int, **kw: object) -> LiveResult:
    base: dict[str, object] = {"row": row, "request_id": f"r{row}", "model": "m", "session_id": None,
                               "endpoint": CHAT_PATH, "prompt_tokens": 10, "max_tokens": 4,
                               "scheduled_s": 0.0, "sent_s": float(row), "done_s": float(row) + 0.5,
                               "ok": True, "status": 200, "cached_tokens": 3}
    return LiveResult(**{**base, **kw})  # type: ignore[arg-type]


def test_sink_writes_valid_parquet_in_trace_order_and_marks_partial(tmp_path: Path) -> None:
    sink = LiveSink(tmp_path / "live.parquet", {"backend": "http://h"})
    sink.flush(partial=True)
    table, meta = read_live(tmp_path / "live.parquet")
    assert table.num_rows == 0 and meta["partial"] is True
    for row in (2, 0, 1):  # finishing out of order
        sink.add(result(row))
    assert sink.dirty
    sink.flush(partial=True, stop_reason="interrupted")
    table, meta = read_live(tmp_path / "live.parquet")
    assert table.schema.remove_metadata() == LIVE_SCHEMA
    assert table.column("row").to_pylist() == [0, 1, 2]
    assert meta == {"backend": "http://h", "partial": True, "requests_done": 3, "stop_reason": "interrupted"}
    sink.flush(partial=False)
    assert read_live(tmp_path / "live.parquet")[1]["partial"] is False


def test_read_live_rejects_other_files(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), tmp_path / "x.parquet")
    with pytest.raises(InputError, match="not a kvern live-replay table"):
        read_live(tmp_path / "x.parquet")


def test_synthetic_prompt_is_a_function_of_the_keys() -> None:
    a = synthetic_prompt([11, 22, 33], 40, 16)
    b = synthetic_prompt([11, 22, 44, 55], 50, 16)
    assert len(a) == 40 and len(b) == 50
    assert a[:32] == b[:32]  # shared keys, shared tokens
    assert a[32:40] != b[32:40]
    assert synthetic_prompt([11], 5, 16) == a[:5]
    assert all(1000 <= t < 30000 for t in a)


def test_chat_bodies_follow_ingest_ids_and_keep_logged_tool_calls(tmp_path: Path) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}
    lines = [
        {"request_id": "a", "messages": [{"role": "user", "content": "hi"}]},
        {"request": {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"},
                                                               {"type": "text", "text": "y"}]}]},
         "response": {"id": "resp-7"}},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None,
                                                         "tool_calls": [call]}],
         "tools": [{"type": "function", "function": {"name": "f"}}]},
    ]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    bodies = chat_bodies(log)
    assert list(bodies) == ["a", "resp-7", "3"]
    assert bodies["resp-7"]["messages"] == [{"role": "user", "content": "x\ny"}]
    third = bodies["3"]
    assert third["messages"][1]["tool_calls"] == [call]  # arguments stay the logged JSON string
    assert third["messages"][1]["content"] == ""
    assert third["tools"] == lines[2]["tools"]


def test_chat_bodies_refuse_a_repeated_request_id(tmp_path: Path) -> None:
    # Rows are matched to logged requests by id: a repeat would replay one row with the
    # other's messages. A line-number id can collide with a logged one too.
    hi, bye = [{"role": "user", "content": "hi"}], [{"role": "user", "content": "bye"}]
    cases = {"a": [{"request_id": "a", "messages": hi}, {"request_id": "a", "messages": bye}],
             "1": [{"messages": hi}, {"id": "1", "messages": bye}]}
    for rid, lines in cases.items():
        log = tmp_path / "log.jsonl"
        log.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
        with pytest.raises(InputError, match=rf"log\.jsonl:2: request id '{rid}' repeats line 1"):
            chat_bodies(log)


def test_server_root_drops_an_openai_base_urls_v1() -> None:
    assert server_root("http://h:8000/v1/") == "http://h:8000"
    assert server_root("http://h:8000/proxy/v1") == "http://h:8000/proxy"
    assert server_root("http://h:8000/") == "http://h:8000"
    assert server_root("http://h:8000/v10") == "http://h:8000/v10"
    with pytest.raises(UsageError, match="expected an http:// or https:// URL"):
        server_root("h:8000")


def test_public_url_drops_credentials() -> None:
    assert public_url("http://user:secret@host:8000/v1") == "http://host:8000/v1"
    assert public_url("https://h.example/") == "https://h.example/"


def test_backoff_doubles_with_bounded_jitter_and_honours_retry_after() -> None:
    import random

    p = RetryPolicy(timeout_s=1, retries=3, backoff_s=0.5)
    rng = random.Random(0)
    for retry, base in enumerate([0.5, 1.0, 2.0, 4.0]):
        assert base <= p.delay(retry, rng, None) <= base * 1.25
    assert p.delay(0, rng, 3.0) == 3.0
    assert p.delay(10, rng, None) <= 10.0 * 1.25


def test_overlaps() -> None:
    sent = np.array([0.0, 1.0, 1.5, 5.0])
    done = np.array([0.9, 2.0, 1.8, 6.0])
    assert _overlaps(sent, done).tolist() == [False, True, True, False]


@pytest.mark.parametrize(("obs", "pred", "prompt", "server", "retries", "overlap", "after", "bs", "cause"), [
    (32, 40, 45, 45, 0, False, False, 16, CAUSE_BLOCK),
    (44, 45, 45, 45, 0, False, False, 1, CAUSE_LAST_TOKEN),
    (0, 300, 400, 400, 0, False, False, 1, CAUSE_EVICTION),
    (300, 0, 400, 400, 0, False, False, 1, CAUSE_MORE),
    (0, 300, 400, 400, 0, True, False, 1, CAUSE_CONCURRENCY),
    (0, 300, 400, 400, 0, False, True, 1, "concurrency (earlier requests overlapped"),
    (0, 300, 400, 400, 2, True, True, 1, "retried (2×"),
    (0, 300, 400, 401, 2, True, True, 1, "template or tokenization drift (server counted 401"),
])
def test_gap_causes(obs: int, pred: int, prompt: int, server: int, retries: int, overlap: bool, after: bool,
                    bs: int, cause: str) -> None:
    assert _cause(obs, pred, prompt, server, retries, overlap, after, bs).startswith(cause)


@pytest.mark.parametrize(("kw", "flag"), [
    ({"max_requests": 0}, "--max-requests"), ({"retries": -1}, "--retries"),
    ({"timeout_s": 0.0}, "--timeout"),
    ({"duration_s": -1.0}, "--duration"), ({"profile": "nope"}, "--profile"),
    ({"profile": "vllm", "policy": "nope"}, "--policy"), ({"backend": "ftp://x"}, "--backend"),
    ({"rate": "5", "speedup": 2.0}, "--speedup"),
])
def test_bad_live_flags_fail_before_anything_is_sent(tmp_path: Path, kw: dict, flag: str) -> None:
    from kvern.commands.live import run_live
    from kvern.infra.config import Config
    from kvern.infra.errors import UsageError
    from kvern.live.replay import LiveOptions

    opts = LiveOptions(**{"backend": "http://127.0.0.1:9", "output_dir": tmp_path / "o", **kw})
    with pytest.raises(UsageError, match=flag):
        run_live(tmp_path / "missing.jsonl", Config(), opts)
    assert not (tmp_path / "o").exists()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.one_of(st.none(), st.integers(0, 10_000)),
                          st.one_of(st.none(), st.floats(0, 10, allow_nan=False)), st.integers(0, 3)),
                max_size=30))
def test_sink_round_trip(tmp_path_factory: pytest.TempPathFactory, rows: list) -> None:
    """Whatever finishes, in whatever order, reads back from live.parquet unchanged, in row order."""
    path = tmp_path_factory.mktemp("sink") / "live.parquet"
    sink = LiveSink(path, {})
    results = [result(i, ok=ok, cached_tokens=cached, ttft_s=ttft, retries=retries,
                      error=None if ok else "x") for i, (ok, cached, ttft, retries) in enumerate(rows)]
    for r in reversed(results):
        sink.add(r)
    sink.flush(partial=False)
    table, meta = read_live(path)
    assert meta["requests_done"] == len(rows)
    back = table.to_pylist()
    for r, got in zip(results, back, strict=True):
        assert {k: getattr(r, k) for k in LIVE_SCHEMA.names} == got


def test_a_server_error_that_echoes_the_request_keeps_no_prompt_text() -> None:
    secret = "My account number is 12345678 and my address is 1 Main St"
    body = {"messages": [{"role": "system", "content": "You are a bank assistant.\nBe brief."},
                         {"role": "user", "content": [{"type": "text", "text": secret}]}]}
    echoed = json.dumps({"error": {"message": "invalid request", "input": body["messages"]}})
    text = redact_prompt(echoed, body)
    assert "12345678" not in text and "bank assistant" not in text
    assert text.count(PROMPT_PLACEHOLDER) == 3 and "invalid request" in text  # one per line
    assert redact_prompt("HTTP 401: bad key", body) == "HTTP 401: bad key"
