"""The proxy's parts on their own: log writer, line format, stream reader, statistics, hot
prefixes, settings, store; and ingest of a log folder and of a ``--content hashes`` log."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import zstandard
from multidict import CIMultiDict
from typer.testing import CliRunner

from kvern.cli import app
from kvern.infra.config import Config, ProxyConfig
from kvern.infra.errors import InputError, UsageError
from kvern.ingest.blocks import token_block_keys
from kvern.ingest.pipeline import ingest, load_trace
from kvern.ingest.source import log_files
from kvern.proxy import store
from kvern.proxy.record import Exchange, secrets_of
from kvern.proxy.recorder import LogWriter, compress
from kvern.proxy.settings import resolve
from kvern.proxy.sse import StreamAccumulator
from kvern.proxy.stats import Histogram
from kvern.proxy.trie import PrefixCounter, display


def chat_line(i: int, **extra: object) -> dict:
    return {"kvern_proxy": 1, "seq": i, "request_id": f"r{i}", "timestamp": 1000.0 + i, "served": True,
            "request": {"model": "m",
                        "messages": [{"role": "system", "content": "Shared system prompt. " * 8},
                                     {"role": "user", "content": f"question {i}"}]},
            "response": {"usage": {"prompt_tokens": 5, "completion_tokens": 2}}, **extra}


def test_log_writer_rotates_compresses_and_keeps_every_line(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, rotate_bytes=2000, rotate_s=3600, fsync_s=0.05)
    lines = [json.dumps(chat_line(i)).encode() + b"\n" for i in range(12)]
    for line in lines:
        w.write(line)
    time.sleep(0.3)
    assert len(list(tmp_path.glob("*.zst"))) >= 2  # rotated files compressed in the background
    w.close()
    files = log_files(tmp_path)
    assert all(f.name.endswith(".jsonl.zst") for f in files) and not list(tmp_path.glob(".*.tmp"))
    got = b"".join(zstandard.ZstdDecompressor().decompressobj().decompress(f.read_bytes()) for f in files)
    assert got == b"".join(lines)


def test_log_writer_rotates_by_time(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, rotate_bytes=1 << 30, rotate_s=0.2, fsync_s=0.05)
    w.write(b'{"a": 1}\n')
    time.sleep(0.6)
    w.write(b'{"a": 2}\n')
    w.close()
    assert len(log_files(tmp_path)) == 2


def test_a_crashed_log_is_trimmed_and_compressed_at_start(tmp_path: Path) -> None:
    left = tmp_path / "kvern-proxy-20250101T000000Z-1-0001.jsonl"
    left.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3, "cut')
    w = LogWriter(tmp_path, rotate_bytes=1 << 20, rotate_s=3600)
    w.close()
    assert not left.exists()
    packed = left.with_name(left.name + ".zst").read_bytes()
    data = zstandard.ZstdDecompressor().decompressobj().decompress(packed)
    assert data == b'{"a": 1}\n{"a": 2}\n'


def test_a_folder_ingests_as_its_files_in_name_order(tmp_path: Path) -> None:
    rows = [chat_line(i) for i in range(6)]
    one = tmp_path / "one.jsonl"
    one.write_text("".join(json.dumps(r) + "\n" for r in rows))
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[3:]))
    a = folder / "a.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    compress(a)
    (folder / "a.jsonl").write_text("stale copy of a rotation in progress\n")  # ignored: .zst wins
    (folder / "c.jsonl").write_text("")  # a log just begun
    (folder / ".hidden.jsonl").write_text("junk\n")
    (folder / "analytics.sqlite").write_bytes(b"SQLite format 3\x00")
    assert [f.name for f in log_files(folder)] == ["a.jsonl.zst", "b.jsonl"]
    single, many = ingest(one, Config()), load_trace(folder, Config())
    for col in ("request_id", "prompt_tokens", "block_keys"):
        assert many.table.column(col).to_pylist() == single.table.column(col).to_pylist()
    res = CliRunner().invoke(app, ["ingest", str(folder), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["total"]["requests"] == 6


def test_unserved_proxy_records_are_left_out(tmp_path: Path) -> None:
    log = tmp_path / "p.jsonl"
    unparsed = {"kvern_proxy": 1, "seq": 2, "served": False, "request_text": "{not json"}
    lines = [chat_line(0), chat_line(1, served=False, status=502), unparsed]
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert ingest(log, Config()).table.column("request_id").to_pylist() == ["r0"]


def test_proxy_hash_lines_are_a_hash_id_trace(tmp_path: Path) -> None:
    keys = token_block_keys("m", np.arange(40), 16)
    signed = [k - (1 << 64) if k >= 1 << 63 else k for k in keys]
    line = {"kvern_proxy": 1, "content": "hashes", "seq": 0, "served": True, "model": "m", "timestamp": 5.0,
            "input_length": 40, "block_size": 16, "hash_ids": signed, "output_length": 3}
    log = tmp_path / "h.jsonl"
    log.write_text(json.dumps(line) + "\n" + json.dumps({**line, "seq": 1, "timestamp": 6.0}) + "\n")
    t = ingest(log, Config())
    assert t.meta.format == "proxy-hashes" and t.meta.block_size == 16
    assert t.table.column("prompt_tokens").to_pylist() == [40, 40]
    keys2 = t.table.column("block_keys").to_pylist()
    assert keys2[0] == keys2[1] and len(keys2[0]) == 3
    log.write_text(json.dumps({**line, "input_length": 80}) + "\n")
    with pytest.raises(InputError, match="hash_ids/length mismatch"):
        ingest(log, Config())
    log.write_text(json.dumps(line) + "\n" + json.dumps({**line, "block_size": 32, "input_length": 64,
                                                          "hash_ids": signed[:2]}) + "\n")
    with pytest.raises(InputError, match="one trace has one block size"):
        ingest(log, Config())


def test_stream_accumulator_whatever_the_chunking() -> None:
    first = {"index": 0, "delta": {"role": "assistant", "content": "Hel"}}
    events = [{"id": "c1", "model": "m", "choices": [first]},
              {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4}},
               "timings": {"cache_n": 4}}]
    raw = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    for cut in range(0, len(raw), 7):
        acc = StreamAccumulator()
        acc.feed(raw[:cut])
        acc.feed(raw[cut:])
        acc.close()
        r = acc.response(chat=True)
        assert r["choices"] == [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "Hello"}}]
        assert r["usage"]["prompt_tokens_details"]["cached_tokens"] == 4 and r["stream_done"]
        assert r["timings"] == {"cache_n": 4}
    acc = StreamAccumulator()
    acc.feed(b"data: {broken\n\ndata: {\"choices\": [{\"text\": \"x\"}]}\n\n")
    assert acc.response(chat=False)["choices"][0]["text"] == "x" and acc.bad_events == 1


def test_lines_embed_the_body_and_never_the_key() -> None:
    key = "sk-secret-abcdef123456"
    headers = CIMultiDict({"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    body = json.dumps({"model": "m", "user": key, "messages": [{"role": "user", "content": "a\nb"}]},
                      indent=2).encode()
    ex = Exchange("r1", "/v1/chat/completions", 10.0, body, secrets=secrets_of(headers), status=200,
                  first_byte=10.5, done=11.0, response={"error": f"bad key {key}"})
    ex.parse()
    line = ex.full_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    obj = json.loads(line)
    assert obj["request"]["messages"][0]["content"] == "a\nb" and obj["served"] and obj["ttft_ms"] == 500.0
    assert key.encode() not in line and key.encode() not in ex.meta_line()
    meta = json.loads(ex.meta_line())
    assert meta["content"] == "none" and "request" not in meta and "a\\nb" not in ex.meta_line().decode()
    bad = Exchange("r2", "/v1/completions", 10.0, b"\xff{", status=400)
    bad.parse()
    assert json.loads(bad.full_line())["unparsed"] is True and not bad.served


def test_histogram_quantiles_are_within_three_percent() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(-7, 1, 5000)
    h = Histogram()
    for v in values:
        h.add(float(v))
    for q in (0.5, 0.99):
        assert h.quantile(q) == pytest.approx(np.quantile(values, q), rel=0.04)


def test_hot_prefixes_show_branch_points_with_their_text() -> None:
    counter = PrefixCounter(4, keep_ids=True)
    system = np.arange(100, 116)  # 4 blocks shared by every request
    for tail in ([1, 2, 3, 4], [5, 6, 7, 8], [1, 2, 3, 4]):
        ids = np.concatenate([system, tail])
        counter.add(token_block_keys("m", ids, 4), len(ids), ids)
    top = counter.top(5, decode=lambda ids: " ".join(map(str, ids)))
    # The shared 16 tokens (3 requests, 2 reuses) and the branch repeated once; the chain of 4
    # blocks always used together shows as one prefix, not four.
    got = [(p.depth_tokens, p.reuses, p.tokens_saved, p.parent) for p in top]
    assert got == [(16, 2, 32, None), (20, 1, 20, 0)]
    assert top[1].text == "1 2 3 4"  # what it adds to its parent
    text = display("m", [{"depth_tokens": p.depth_tokens, "reuses": p.reuses, "tokens_saved": p.tokens_saved,
                          "parent": p.parent, "text": p.text} for p in top])
    assert "└── 16 tok" in text and "    └── 20 tok" in text


def test_settings_and_command_line_errors(tmp_path: Path) -> None:
    s = resolve(ProxyConfig(), upstream="http://user:pw@127.0.0.1:8000/v1/", log_dir=tmp_path)
    assert s.upstream == "http://user:pw@127.0.0.1:8000" and s.public_upstream == "http://127.0.0.1:8000"
    assert s.store == tmp_path / "analytics.sqlite"
    for kwargs, match in (({}, "--upstream is required"), ({"upstream": "ftp://x"}, "http://"),
                          ({"upstream": "http://x", "content": "all"}, "--content")):
        with pytest.raises(UsageError, match=match):
            resolve(ProxyConfig(), **kwargs)  # type: ignore[arg-type]
    res = CliRunner().invoke(app, ["proxy", "--content", "all", "--upstream", "http://127.0.0.1:1"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_store_refuses_another_schema_version(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    store.create(db, "run1", {})
    store.create(db, "run2", {})  # the same version: a second run in the same store
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(UsageError, match="store schema 99"):
        store.create(db, "run3", {})
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UsageError, match="not an SQLite file"):
        store.create(junk, "run1", {})
