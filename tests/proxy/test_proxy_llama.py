"""The proxy in front of a real llama-server, with the official ``openai`` client and plain HTTP.

Two servers get the same requests, one directly and one through the proxy: the answers must be
the same. The proxy's prediction (llamacpp profile, one slot) must equal the server's reported
cached tokens on every request; its log must ingest to the server's prompt token counts and
replay, and ``kvern replay`` must work through it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from llama_proc import SERVED_MODEL
from proxy_helpers import SECRET, Proc, all_bytes
from typer.testing import CliRunner

from kvern.cli import app
from kvern.infra.config import Config
from kvern.ingest.pipeline import load_trace

pytestmark = pytest.mark.live

SYSTEM = ("You are the operations assistant of the platform team. You read the incident log and the "
          "deploy calendar, and you help the on-call engineer decide what to do next. Be brief.")


def _session() -> list[tuple[str, dict]]:
    """Two interleaved conversations (scripted assistant turns), streamed and not, and completions:
    the one slot switches between them, so the host prompt cache saves and loads states."""
    reqs: list[tuple[str, dict]] = []
    convs = {k: [{"role": "system", "content": SYSTEM + (" Team " + k)}] for k in "AB"}
    for turn in range(4):
        for k in "AB":
            msgs = convs[k]
            question = f"Conversation {k}, question {turn}: what broke at {turn}:00?"
            msgs.append({"role": "user", "content": question})
            reqs.append(("chat", {"messages": list(msgs), "stream": (turn + (k == "B")) % 2 == 0}))
            answer = f"At {turn}:00 the deploy of service {k}{turn} failed."
            msgs.append({"role": "assistant", "content": answer})
    prompt = "Incident INC-2291 (sev2): the storage migration"
    reqs.append(("completion", {"prompt": prompt, "stream": True}))
    reqs.append(("completion", {"prompt": prompt, "stream": False}))
    reqs.append(("chat", {"messages": convs["A"][:2], "stream": False}))  # back to a known prefix
    return reqs


def _send(client: openai.OpenAI, kind: str, spec: dict) -> dict:
    common = {"model": SERVED_MODEL, "max_tokens": 6, "temperature": 0}
    stream = spec["stream"]
    extra = {"stream_options": {"include_usage": True}} if stream else {}
    if kind == "chat":
        res = client.chat.completions.create(messages=spec["messages"], stream=stream, **common, **extra)
    else:
        res = client.completions.create(prompt=spec["prompt"], stream=stream, **common, **extra)
    if not stream:
        choice = res.choices[0]
        text = choice.message.content if kind == "chat" else choice.text
        return _answer(text, choice.finish_reason, res.usage)
    text, finish, usage = "", None, None
    for chunk in res:
        for choice in chunk.choices:
            piece = choice.delta.content if kind == "chat" else choice.text
            text += piece or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    return _answer(text, finish, usage)


def _answer(text: str | None, finish: str | None, usage: object) -> dict:
    details = getattr(usage, "prompt_tokens_details", None)
    return {"text": text, "finish": finish, "prompt_tokens": usage.prompt_tokens,  # type: ignore[attr-defined]
            "completion_tokens": usage.completion_tokens,  # type: ignore[attr-defined]
            "cached": getattr(details, "cached_tokens", None)}


def test_llama_server_through_the_proxy(llama_server, proxy, tmp_path: Path) -> None:
    direct_server = llama_server(slots=1, ctx_per_slot=4096)
    server = llama_server(slots=1, ctx_per_slot=4096)
    p: Proc = proxy(server.url, "--profile", "llamacpp", "--capacity", "1M tok")
    direct = openai.OpenAI(base_url=direct_server.url + "/v1", api_key=SECRET, max_retries=0)
    via = openai.OpenAI(base_url=p.url + "/v1", api_key=SECRET, max_retries=0)
    reqs = _session()
    answers = []
    for kind, spec in reqs:
        a, b = _send(direct, kind, spec), _send(via, kind, spec)
        assert b == a, (kind, spec)  # text, finish reason, token counts and cached tokens
        answers.append(b)
    assert sum(a["cached"] for a in answers) > 0

    # Plain HTTP, streamed: the same events' text through the proxy as directly.
    body = {"model": SERVED_MODEL, "max_tokens": 6, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": "plain http"}]}
    texts = []
    for url in (direct_server.url, p.url):
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data: {")]
        texts.append("".join(c["choices"][0]["delta"].get("content") or "" for c in events if c["choices"]))
    assert texts[0] == texts[1]
    n = len(reqs) + 1

    # kvern replay TRACE --backend <proxy>: a tokenized trace replays through it.
    from synthetic import shared_prefix_prompts, token_trace

    prompts, outputs = shared_prefix_prompts(seed=3, n=8)
    trace = token_trace(tmp_path / "t.parquet", prompts, outputs)
    res = CliRunner().invoke(app, ["replay", str(trace), "--backend", p.url, "--profile", "llamacpp",
                                   "--concurrency", "1", "--served-model", SERVED_MODEL, "--json",
                                   "-o", str(tmp_path / "through")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["succeeded"] == 8
    n += 8

    # The prediction equals what the server reported, request by request.
    h = p.wait_analyzed(n)
    assert h["analytics"]["behind_requests"] == 0
    with sqlite3.connect(p.folder / "analytics.sqlite") as db:
        rows = db.execute("SELECT seq, prompt_tokens, server_prompt_tokens, predicted_cached_tokens, "
                          "server_cached_tokens, outcome, status, endpoint, error, served "
                          "FROM requests ORDER BY seq").fetchall()
    # kvern replay retries an attempt that failed on a busy machine, and the proxy records every
    # attempt: allow a few more records than requests, never fewer.
    assert n <= len(rows) <= n + 2, [r[5:] for r in rows]
    assert rows[len(reqs)][2] is None  # the plain stream asked for no usage: the server reported none
    served = [r for r in rows if r[9]]
    m = len(served)
    reported = [r for r in served if r[2] is not None]
    assert len(reported) == m - 1 >= n - 1
    assert [r[1] for r in reported] == [r[2] for r in reported]  # kvern's tokenization = the server's
    assert [r[3] for r in reported] == [r[4] for r in reported], rows
    analytics = httpx.get(p.url + "/analytics").json()
    overall = analytics["run"]["overall"]
    assert overall["requests"] == len(rows)
    assert overall["predicted_cached_tokens"] == sum(r[3] or 0 for r in rows)
    assert overall["server_cached_tokens"] == sum(r[4] for r in reported) > 0
    assert overall["ttft_p50_ms"] is not None and overall["overhead_p99_ms"] is not None
    deadline = time.monotonic() + 10  # the worker snapshots its hot prefixes every 2 s
    while SERVED_MODEL not in (models := httpx.get(p.url + "/trie/visualize").json()["models"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    hot = models[SERVED_MODEL]
    assert hot["prefixes"] and "operations assistant" in hot["display"]
    metrics = httpx.get(p.url + "/metrics").text
    assert f'kvern_requests_total{{model="{SERVED_MODEL}"}} {len(rows)}' in metrics
    assert p.stop() == 0
    assert SECRET.encode() not in all_bytes(p.folder)
    assert SECRET not in p.log.read_text()

    # kvern ingest of the log: the server's prompt token counts, request by request.
    t = load_trace(p.folder, Config())
    assert t.num_requests == m
    assert t.table.column("prompt_tokens").to_pylist() == [r[1] for r in served]
    assert [x for x, r in zip(t.table.column("prompt_tokens").to_pylist(), served, strict=True)
            if r[2] is not None] == [r[2] for r in reported]

    # kvern replay LOGDIR --backend <llama-server>: the recorded traffic replays; a fresh server
    # (the same state as at the start) is predicted exactly.
    fresh = llama_server(slots=1, ctx_per_slot=4096)
    res = CliRunner().invoke(app, ["replay", str(p.folder), "--backend", fresh.url, "--profile", "llamacpp",
                                   "--concurrency", "1", "--json", "-o", str(tmp_path / "again")])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["succeeded"] == m
    assert summary["agreed"] == summary["compared"] == m, summary["gap_causes"]
    assert np.isclose(summary["observed_token_hit_rate"], overall["server_token_hit_rate"], atol=0.05)
