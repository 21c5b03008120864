"""Every log format, auto-detected, with its metadata; compressed files read the same."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard
from ingest_helpers import ingest_rows, write_jsonl

from kvern.infra.config import Config, IngestConfig
from kvern.ingest.blocks import hash_id_block_keys, token_block_keys
from kvern.ingest.pipeline import ingest
from kvern.ingest.tokenizer import get_tokenizer

TOK = get_tokenizer("kvern:qwen2.5")
HI = [{"role": "user", "content": "Hello world"}]


def _chat_ids(messages: list[dict[str, object]], tools: list[object] | None = None) -> list[int]:
    ids: list[int] = TOK.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                             tokenize=True, return_dict=False)
    return ids


def test_mooncake(tmp_path: Path) -> None:
    t = ingest_rows(tmp_path, [
        {"timestamp": 1000, "input_length": 1000, "output_length": 7, "hash_ids": [0, 1]},
        {"timestamp": 3500, "input_length": 512, "output_length": 3, "hash_ids": [0]},
    ])
    assert t.meta.format == "mooncake" and t.meta.block_size == 512
    assert t.meta.tokenizers == {"default": "hash-ids"}
    rows = t.table.to_pylist()
    assert [r["arrival_s"] for r in rows] == [0.0, 2.5]
    assert [r["prompt_tokens"] for r in rows] == [1000, 512]
    assert [r["output_tokens"] for r in rows] == [7, 3]
    assert rows[0]["block_keys"] == hash_id_block_keys("default", [0, 1])
    assert rows[1]["block_keys"] == rows[0]["block_keys"][:1]
    assert rows[0]["token_ids"] is None and rows[0]["request_id"] == "1"


def test_mooncake_model_and_block_size(tmp_path: Path) -> None:
    cfg = Config(ingest=IngestConfig(trace_block_size=100))
    t = ingest_rows(tmp_path, [{"timestamp": 0, "input_length": 150, "hash_ids": [4, 5]}], cfg, model="m")
    assert t.meta.block_size == 100 and t.table.column("model").to_pylist() == ["m"]
    assert t.table.column("block_keys").to_pylist()[0] == hash_id_block_keys("m", [4, 5])


def test_bailian_chains_ids_and_sessions(tmp_path: Path) -> None:
    t = ingest_rows(tmp_path, [
        {"chat_id": 10, "parent_chat_id": -1, "timestamp": 5.0, "input_length": 20, "output_length": 4,
         "type": "text", "turn": 1, "hash_ids": [7, 8]},
        {"chat_id": 11, "parent_chat_id": 10, "timestamp": 6.5, "input_length": 40, "output_length": 4,
         "type": "text", "turn": 2, "hash_ids": [7, 8, 9]},
        {"chat_id": 12, "parent_chat_id": 11, "timestamp": 9.0, "input_length": 33, "output_length": 1,
         "type": "text", "turn": 3, "hash_ids": [7, 8, 9]},
    ])
    assert t.meta.format == "bailian" and t.meta.block_size == 16
    rows = t.table.to_pylist()
    assert [r["session_id"] for r in rows] == ["10", "10", "10"]
    assert [r["request_id"] for r in rows] == ["10", "11", "12"]
    assert [r["arrival_s"] for r in rows] == [0.0, 1.5, 4.0]
    # Per-block ids are chained, so block 2 of request 2 names the whole prefix 7, 8, 9.
    assert rows[1]["block_keys"] == hash_id_block_keys("default", [7, 8, 9])
    assert rows[1]["block_keys"][:2] == rows[0]["block_keys"]


def test_openai_chat_with_metadata(tmp_path: Path) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    t = ingest_rows(tmp_path, [
        {"model": "a", "messages": HI, "timestamp": "2025-01-01T00:00:10Z", "id": "r1", "user": "u1",
         "usage": {"completion_tokens": 9}},
        {"model": "a", "messages": HI, "tools": tools, "timestamp": 1735689605, "request_id": "r2",
         "session_id": "s", "output_tokens": 3},
        {"model": "a", "messages": HI, "timestamp": 1735689600000},  # epoch ms
    ])
    rows = t.table.to_pylist()
    assert t.meta.format == "openai-chat" and t.meta.block_size == 16
    assert [r["request_id"] for r in rows] == ["3", "r2", "r1"]  # sorted by arrival
    assert [r["arrival_s"] for r in rows] == [0.0, 5.0, 10.0]
    assert [r["session_id"] for r in rows] == [None, "s", "u1"]
    assert [r["output_tokens"] for r in rows] == [None, 3, 9]
    assert rows[2]["token_ids"] == _chat_ids(HI)
    assert rows[1]["token_ids"] == _chat_ids(HI, tools)
    assert rows[0]["prompt_tokens"] == len(rows[0]["token_ids"])
    assert rows[2]["block_keys"] == token_block_keys("a", rows[2]["token_ids"], 16)


def test_wrapper_shape(tmp_path: Path) -> None:
    t = ingest_rows(tmp_path, [{"timestamp": "2025-01-01T00:00:00+00:00",
                                "request": {"model": "a", "messages": HI},
                                "response": {"id": "chatcmpl-1", "usage": {"completion_tokens": 12}}}])
    row = t.table.to_pylist()[0]
    assert t.meta.format == "openai-chat"
    assert (row["request_id"], row["output_tokens"], row["token_ids"]) == ("chatcmpl-1", 12, _chat_ids(HI))


def test_content_parts_and_tool_call_arguments(tmp_path: Path) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
             {"role": "assistant", "content": None, "tool_calls": [
                 {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]},
             {"role": "tool", "content": "ok"}]
    row = ingest_rows(tmp_path, [{"model": "a", "messages": parts}]).table.to_pylist()[0]
    # Text parts joined by "\n" (as vLLM), arguments parsed from their JSON string (as vLLM).
    expected = [{"role": "user", "content": "a\nb"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]},
                {"role": "tool", "content": "ok"}]
    assert row["token_ids"] == _chat_ids(expected)


def test_completions_and_tokens(tmp_path: Path) -> None:
    t = ingest_rows(tmp_path, [{"model": "a", "prompt": "Hello world"}])
    assert t.meta.format == "completions" and t.table.to_pylist()[0]["token_ids"] == [9707, 1879]
    t = ingest_rows(tmp_path, [{"model": "a", "prompt": [1, 2, 3]}])
    assert t.meta.format == "completions" and t.table.to_pylist()[0]["token_ids"] == [1, 2, 3]
    t = ingest_rows(tmp_path, [{"model": "a", "prompt_token_ids": [5, 6]}, {"model": "a", "tokens": [5]}])
    assert t.meta.format == "tokens"
    assert t.table.column("token_ids").to_pylist() == [[5, 6], [5]]
    assert t.table.column("prompt_tokens").to_pylist() == [2, 1]


def test_no_model_uses_hash_trace_model(tmp_path: Path) -> None:
    t = ingest_rows(tmp_path, [{"messages": HI}])
    assert t.table.column("model").to_pylist() == ["default"]
    t = ingest_rows(tmp_path, [{"messages": HI}], model="x")
    assert t.table.column("model").to_pylist() == ["x"]


def test_format_override(tmp_path: Path) -> None:
    # A line with both keys is pre-tokenized by default; --format completions tokenizes the text.
    line = {"model": "a", "prompt": "Hello world", "prompt_token_ids": [1]}
    assert ingest_rows(tmp_path, [line]).table.column("token_ids").to_pylist() == [[1]]
    t = ingest_rows(tmp_path, [line], fmt="completions")
    assert t.table.column("token_ids").to_pylist() == [[9707, 1879]]


@pytest.mark.parametrize("compress", [gzip.compress, lambda b: zstandard.ZstdCompressor().compress(b)])
def test_compressed_logs_read_the_same(tmp_path: Path, compress) -> None:  # type: ignore[no-untyped-def]
    rows = [{"model": "a", "messages": HI, "timestamp": i} for i in range(3)]
    plain = ingest(write_jsonl(tmp_path / "plain.jsonl", rows), Config())
    packed = tmp_path / "log.jsonl.z"
    packed.write_bytes(compress((tmp_path / "plain.jsonl").read_bytes()))
    assert ingest(packed, Config()).table.equals(plain.table)


def test_blank_lines_and_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "log.jsonl"
    p.write_text("\n" + json.dumps({"prompt_token_ids": [1]}) + "\n\n" + json.dumps({"tokens": [2]}) + "\n")
    assert ingest(p, Config()).table.column("request_id").to_pylist() == ["2", "4"]


def test_missing_timestamps_take_the_line_before(tmp_path: Path) -> None:
    rows = [{"tokens": [1]}, {"tokens": [2], "timestamp": 10}, {"tokens": [3]},
            {"tokens": [4], "timestamp": 5}]
    t = ingest_rows(tmp_path, rows)
    assert t.table.column("request_id").to_pylist() == ["4", "1", "2", "3"]  # stable sort by time
    assert t.table.column("arrival_s").to_pylist() == [0.0, 5.0, 5.0, 5.0]
    t = ingest_rows(tmp_path, [{"tokens": [1]}, {"tokens": [2]}])
    assert t.table.column("arrival_s").to_pylist() == [0.0, 0.0]
    assert t.table.column("request_id").to_pylist() == ["1", "2"]


def test_utf8_bom_and_crlf(tmp_path: Path) -> None:
    p = tmp_path / "log.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + b'{"tokens": [1, 2]}\r\n{"tokens": [3]}\r\n')
    assert ingest(p, Config()).table.column("token_ids").to_pylist() == [[1, 2], [3]]
