"""A server that sends nonsense (issue 16, class 5): every field is checked, an impossible value
is that request's error with the raw value, the run goes on and nothing measured is lost.

The server is a few lines of aiohttp in a thread, so these tests need no llama-server.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from aiohttp import web
from typer.testing import CliRunner

from kvern.cli import app

KEY = "sk-hostile-test-0123456789abcdef"


def _sse(usage: object, *, extra: str = "") -> bytes:
    chunk = {"choices": [{"index": 0, "text": "x", "finish_reason": None}]}
    last = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}], "usage": usage}
    body = f"data: {json.dumps(chunk)}\n\n{extra}data: {json.dumps(last)}\n\ndata: [DONE]\n\n"
    return body.encode()


def _usage(cached: object, prompt: object = 40) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


DONE = b"data: [DONE]\n\n"

# mode -> (content type, body)
MODES: dict[str, tuple[str, bytes]] = {
    "ok": ("text/event-stream", _sse(_usage(16))),
    "usage_lots": ("text/event-stream", _sse("lots")),
    "cached_huge_int": ("text/event-stream", _sse(_usage(10**30))),
    "cached_1e308": ("text/event-stream", _sse(_usage(1e308))),
    "cached_negative": ("text/event-stream", _sse(_usage(-5))),
    "cached_string": ("text/event-stream", _sse(_usage("16"))),
    "cached_bool": ("text/event-stream", _sse(_usage(True))),
    "cached_over_prompt": ("text/event-stream", _sse(_usage(500, 40))),
    "details_list": ("text/event-stream", _sse({"prompt_tokens": 4, "prompt_tokens_details": [1]})),
    "choices_int": ("text/event-stream", b'data: {"choices": 5}\n\ndata: [DONE]\n\n'),
    "finish_obj": ("text/event-stream", b'data: {"choices": [{"finish_reason": {"a": 1}}]}\n\n' + DONE),
    "surrogate": ("text/event-stream", b'data: {"choices": [{"finish_reason": "\\ud800"}]}\n\n' + DONE),
    "deep": ("text/event-stream", b"data: " + b"[" * 5000 + b"]" * 5000 + b"\n\ndata: [DONE]\n\n"),
    "html": ("text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "plain": ("text/plain", b"upstream connect error"),
    "echo_key": ("text/event-stream", b""),  # filled per request: usage echoes the Authorization header
}


class Hostile:
    """An OpenAI-style server whose POST answers follow ``modes`` (one per request, the last repeating)."""

    def __init__(self, modes: list[str]) -> None:
        self.modes = modes
        self.posts = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    async def _post(self, request: web.Request) -> web.StreamResponse:
        mode = self.modes[min(self.posts, len(self.modes) - 1)]
        self.posts += 1
        ctype, body = MODES[mode]
        if mode == "echo_key":
            body = _sse({"prompt_tokens": request.headers.get("Authorization", "")})
        return web.Response(body=body, content_type=ctype)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", self._post)
        app.router.add_post("/v1/chat/completions", self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def __enter__(self) -> Hostile:
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


def _log(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "log.jsonl"
    path.write_text(
        "".join(
            json.dumps({"model": "m", "prompt": f"a shared prefix of some length {i}"}) + "\n"
            for i in range(n)
        )
    )
    return path


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Path]:
    yield _log(tmp_path, 3)


def _run(log: Path, modes: list[str], tmp_path: Path) -> tuple[object, Path, Hostile]:
    out = tmp_path / "live"
    with Hostile(modes) as server:
        res = CliRunner().invoke(
            app,
            [
                "replay",
                str(log),
                "--backend",
                f"http://127.0.0.1:{server.port}",
                "--api-key",
                KEY,
                "--retries",
                "0",
                "--concurrency",
                "1",
                "--capacity",
                "100",
                "-o",
                str(out),
            ],
        )
    return res, out, server


HOSTILE = [
    ("usage_lots", 'usage = "lots"'),
    ("cached_huge_int", "cached_tokens = 1000000000000000000000000000000"),
    ("cached_1e308", "cached_tokens = 1e+308"),
    ("cached_negative", "cached_tokens = -5"),
    ("cached_string", 'cached_tokens = "16"'),
    ("cached_bool", "cached_tokens = true"),
    ("cached_over_prompt", "is more than usage.prompt_tokens"),
    ("details_list", "prompt_tokens_details = [1]"),
    ("choices_int", "choices = 5"),
    ("finish_obj", "finish_reason ="),
    ("surrogate", "surrogate"),
    ("deep", "nested more than"),
    ("html", "text/html, not an event stream"),
    ("plain", "text/plain, not an event stream"),
]


def test_impossible_server_values_are_per_request_errors_and_nothing_is_lost(tmp_path: Path) -> None:
    # One run, one hostile answer per request, between good ones: each nonsense is that
    # request's error quoting the raw value, and the good answers around it all survive.
    modes = ["ok"]
    for mode, _shown in HOSTILE:
        modes += [mode, "ok"]
    res, out, server = _run(_log(tmp_path, len(modes)), modes, tmp_path)
    text = res.output  # type: ignore[attr-defined]
    assert res.exit_code == 0, text  # type: ignore[attr-defined]
    assert "Traceback" not in text and "never retrieved" not in text
    live = pq.read_table(out / "live.parquet").to_pylist()
    assert len(live) == len(modes) == server.posts
    for i, (mode, shown) in enumerate(HOSTILE):
        bad, good = live[1 + 2 * i], live[2 + 2 * i]
        assert not bad["ok"] and shown in bad["error"], (mode, bad["error"])
        assert good["ok"] and good["cached_tokens"] == 16, mode
    assert live[0]["ok"]
    summary = json.loads((out / "live_summary.json").read_text())
    assert summary["requests"] == len(modes)


def test_a_run_where_every_answer_is_impossible_fails_with_exit_2(log: Path, tmp_path: Path) -> None:
    res, out, _server = _run(log, ["usage_lots"], tmp_path)
    assert res.exit_code == 2, res.output  # type: ignore[attr-defined]
    assert 'usage = "lots"' in res.output  # type: ignore[attr-defined]
    assert len(pq.read_table(out / "live.parquet")) == 3


def test_a_server_that_echoes_the_key_in_a_field_never_gets_it_written(log: Path, tmp_path: Path) -> None:
    res, out, _server = _run(log, ["ok", "echo_key"], tmp_path)
    assert KEY not in res.output  # type: ignore[attr-defined]
    for f in out.iterdir():
        assert KEY.encode() not in f.read_bytes(), f.name
