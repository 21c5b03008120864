"""The proxy in front of a small fake upstream: transparency, and every fault the issue names
that a real llama-server cannot be made to show on demand."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from llama_proc import free_port
from proxy_helpers import AUTH, SECRET, Proc, all_bytes, chat, records, wait_records

from kvern.infra.config import Config
from kvern.infra.errors import InputError
from kvern.ingest.pipeline import load_trace
from kvern.ingest.source import log_files


def test_answers_pass_through_unchanged_and_are_recorded(fake_upstream, proxy) -> None:
    up = fake_upstream()
    p: Proc = proxy(up.url, "--profile", "llamacpp")
    with httpx.Client(timeout=10) as c:
        for path, body in (("/v1/chat/completions", chat(stream=True)), ("/v1/chat/completions", chat()),
                           ("/v1/completions", {"model": "fast", "prompt": "Hello there", "stream": True}),
                           ("/v1/completions", {"model": "fast", "prompt": "Hello there"})):
            direct = c.post(up.url + path, json=body, headers=AUTH)
            via = c.post(p.url + path, json=body, headers=AUTH)
            assert via.status_code == direct.status_code == 200
            assert via.content == direct.content
            assert via.headers["content-type"] == direct.headers["content-type"]
            seen = c.get(up.url + "/_seen").json()
            assert seen["Authorization"] == f"Bearer {SECRET}"  # forwarded unchanged
        assert c.get(p.url + "/v1/models").json() == c.get(up.url + "/v1/models").json()
    recs = wait_records(p.folder, 4)
    assert [r["endpoint"] for r in recs] == ["/v1/chat/completions"] * 2 + ["/v1/completions"] * 2
    assert all(r["served"] and r["outcome"] == "ok" and r["status"] == 200 for r in recs)
    streamed = recs[0]["response"]
    assert streamed["choices"][0]["message"]["content"] == "t0 t1 t2 t3 "
    assert streamed["usage"]["prompt_tokens_details"]["cached_tokens"] == 3
    assert streamed["choices"][0]["finish_reason"] == "length"
    assert recs[2]["response"]["choices"][0]["text"] == "t0 t1 t2 t3 "
    t = recs[0]["times"]
    assert t["received"] <= t["first_byte"] <= t["done"]
    assert recs[0]["request"] == chat(stream=True)
    h = p.wait_analyzed(4)
    assert h["analytics"]["behind_requests"] == 0
    assert p.stop() == 0
    assert SECRET.encode() not in all_bytes(p.folder)


def test_upstream_down_slow_and_garbage(fake_upstream, proxy) -> None:
    down = proxy(f"http://127.0.0.1:{free_port()}")
    r = httpx.post(down.url + "/v1/chat/completions", json=chat(), timeout=10)
    assert r.status_code == 502
    assert r.json()["error"]["type"] == "upstream_unreachable"
    up = fake_upstream()
    p = proxy(up.url, read_timeout=1.0)
    r = httpx.post(p.url + "/v1/chat/completions", json=chat("slow", slow_s=3), timeout=10)
    assert r.status_code == 504
    assert r.json()["error"]["type"] == "upstream_timeout"
    r = httpx.post(p.url + "/v1/chat/completions", json=chat("garbage"), timeout=10)
    assert r.status_code == 502
    assert r.json()["error"]["type"] == "upstream_bad_response"
    assert httpx.post(p.url + "/v1/chat/completions", json=chat(), timeout=10).status_code == 200
    recs = wait_records(p.folder, 3)
    assert [(r["status"], r["outcome"], r["served"]) for r in recs] == [
        (504, "upstream_timeout", False), (502, "upstream_bad_response", False), (200, "ok", True)]
    assert wait_records(down.folder, 1)[0]["outcome"] == "upstream_unreachable"


def test_upstream_killed_mid_stream_cuts_the_client_too(fake_upstream, proxy) -> None:
    up = fake_upstream()
    p = proxy(up.url)
    with pytest.raises(httpx.HTTPError), httpx.stream(
            "POST", p.url + "/v1/chat/completions", json=chat("die", stream=True), timeout=10) as r:
        for _ in r.iter_bytes():
            pass
    rec = wait_records(p.folder, 1)[0]
    assert rec["outcome"] == "upstream_cut" and rec["status"] == 200
    assert rec["response"]["choices"][0]["message"]["content"].startswith("t0 ")
    assert p.health()["status"] == "ok"


def test_client_disconnect_cancels_the_upstream_request(fake_upstream, proxy) -> None:
    up = fake_upstream()
    p = proxy(up.url)
    body = json.dumps(chat("hang", stream=True)).encode()
    with socket.create_connection(("127.0.0.1", p.port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        got = b""
        while b"t0" not in got:
            chunk = s.recv(65536)
            assert chunk, "the stream ended before its first event"
            got += chunk
    deadline = time.monotonic() + 10
    while "client left" not in httpx.get(up.url + "/_events").json():
        assert time.monotonic() < deadline, "the upstream request was not cancelled"
        time.sleep(0.05)
    rec = wait_records(p.folder, 1)[0]
    assert rec["outcome"] == "client_disconnected"


def test_unparsable_body_is_forwarded_and_recorded_as_unparsed(fake_upstream, proxy) -> None:
    up = fake_upstream()
    p = proxy(up.url)
    r = httpx.post(p.url + "/v1/chat/completions", content=b"{not json", timeout=10,
                   headers={"Content-Type": "application/json"})
    direct = httpx.post(up.url + "/v1/chat/completions", content=b"{not json", timeout=10,
                        headers={"Content-Type": "application/json"})
    assert r.status_code == direct.status_code >= 400  # the upstream decided
    rec = wait_records(p.folder, 1)[0]
    assert rec["unparsed"] is True and rec["served"] is False and rec["request_text"] == "{not json"


def test_sigterm_lets_streams_in_flight_finish(fake_upstream, proxy) -> None:
    up = fake_upstream()
    p = proxy(up.url, grace=20)
    bodies: list[bytes] = []

    def stream() -> None:
        with httpx.stream("POST", p.url + "/v1/chat/completions", timeout=30,
                          json=chat(stream=True, max_tokens=15, chunk_delay_s=0.1)) as r:
            bodies.append(r.read())

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while p.health()["in_flight"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    p.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):
        httpx.get(p.url + "/health", timeout=2)  # no longer accepting
    for t in threads:
        t.join(30)
    assert p.proc.wait(30) == 0
    assert len(bodies) == 3 and all(b.endswith(b"data: [DONE]\n\n") for b in bodies)
    recs = records(p.folder)
    assert len(recs) == 3 and all(r["outcome"] == "ok" and r["response"]["stream_done"] for r in recs)
    assert all(f.name.endswith(".zst") for f in log_files(p.folder))  # closed and compressed
    with sqlite3.connect(p.folder / "analytics.sqlite") as db:
        assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 3
    assert "stopped: 3 request(s) recorded" in p.log.read_text()


def test_a_full_queue_catches_up_from_the_log(fake_upstream, proxy) -> None:
    up = fake_upstream()
    p = proxy(up.url, "--profile", "llamacpp", queue_mb=0.01)
    filler = "lorem ipsum dolor sit amet " * 500  # ~13 kB a request: the pipe fills quickly
    n = 320

    def send(i: int) -> None:
        with httpx.Client(timeout=30) as c:
            for j in range(i, n, 8):
                body = {"model": "fast", "max_tokens": 1,
                        "messages": [{"role": "user", "content": f"{j} {filler}"}]}
                assert c.post(p.url + "/v1/chat/completions", json=body).status_code == 200

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    h = p.wait_analyzed(n, timeout=60)
    assert h["analytics"]["dropped_to_catch_up"] > 0
    assert h["analytics"]["behind_requests"] == 0
    assert p.stop() == 0
    with sqlite3.connect(p.folder / "analytics.sqlite") as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM requests ORDER BY seq")]
        assert seqs == list(range(n))
        assert db.execute("SELECT count(*) FROM requests WHERE prompt_tokens IS NULL").fetchone()[0] == 0


@pytest.mark.parametrize("content", ["hashes", "none"])
def test_content_modes_store_no_text(fake_upstream, proxy, tmp_path: Path, content: str) -> None:
    from typer.testing import CliRunner

    from kvern.cli import app

    up = fake_upstream()
    p = proxy(up.url, "--content", content)
    word = "Zanzibarquux"
    for i in range(4):
        body = {"model": "fast", "messages": [{"role": "system", "content": f"{word} rules. " * 20},
                                              {"role": "user", "content": f"question {i}"}]}
        r = httpx.post(p.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=10)
        assert r.status_code == 200
    assert p.stop() == 0
    blob = all_bytes(p.folder)
    assert word.encode() not in blob and SECRET.encode() not in blob
    res = CliRunner().invoke(app, ["ingest", str(p.folder), "--json"])
    if content == "none":
        assert res.exit_code == 2
        with pytest.raises(InputError, match="--content none"):
            load_trace(p.folder, Config())
        return
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["format"] == "proxy-hashes" and summary["total"]["requests"] == 4
    # the same prompts as a tokenized trace: 4 identical system prompts share their blocks
    assert summary["total"]["infinite_cache_tokens"] > 0
