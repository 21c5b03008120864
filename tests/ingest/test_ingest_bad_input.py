"""Every class of bad input: file:line: what, exit 2, nothing written; --skip-invalid counts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import zstandard
from ingest_helpers import ingest_rows, write_jsonl
from typer.testing import CliRunner

from kvern.cli import app
from kvern.infra.config import Config
from kvern.infra.errors import InputError, UsageError
from kvern.ingest.pipeline import ingest, load_trace

GOOD = {"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}
HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("bad", "message"), [
    ("{not json", "bad JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ({**GOOD, "input_length": "ten"}, "'input_length' must be an integer, got 'ten'"),
    ({**GOOD, "input_length": 3.5}, "'input_length' must be an integer"),
    ({k: v for k, v in GOOD.items() if k != "hash_ids"}, "missing field 'hash_ids'"),
    ({k: v for k, v in GOOD.items() if k != "input_length"}, "missing field 'input_length'"),
    ({**GOOD, "input_length": -5}, "'input_length' is negative: -5"),
    ({**GOOD, "output_length": -1}, "'output_length' is negative: -1"),
    ({**GOOD, "output_length": 2**31}, "'output_length' is too large for a token count: 2147483648"),
    ({**GOOD, "input_length": 600}, "hash_ids/length mismatch: 1 hash_ids but input_length 600 needs 2"),
    ({**GOOD, "hash_ids": [1, "x"]}, "'hash_ids[1]' must be an integer"),
    ({**GOOD, "hash_ids": [2**63]}, "'hash_ids[0]' does not fit in 64 bits: 9223372036854775808"),
    ({**GOOD, "timestamp": "yesterday"}, "'timestamp' is not an ISO-8601 time"),
    ({**GOOD, "timestamp": -3}, "'timestamp' is negative"),
    ({**GOOD, "input_length": 0, "hash_ids": []}, "empty prompt"),
])
def test_bad_mooncake_line(tmp_path: Path, bad: Any, message: str) -> None:
    with pytest.raises(InputError) as err:
        ingest_rows(tmp_path, [GOOD, bad])
    assert err.value.line == 2 and err.value.path == str(tmp_path / "log.jsonl")
    assert err.value.message.startswith(f"{tmp_path / 'log.jsonl'}:2: ")
    assert message in err.value.reason


@pytest.mark.parametrize(("bad", "message"), [
    ({"model": "a", "messages": []}, "'messages' must be a non-empty list"),
    ({"model": "a", "messages": "hi"}, "'messages' must be a non-empty list"),
    ({"model": "a", "messages": [{"content": "x"}]}, "messages[0] has no 'role'"),
    ({"model": "a", "messages": [{"role": "user", "content": 5}]}, "messages[0].content must be a string"),
    ({"model": "a", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages[0].content[0] is a non-text part"),
    ({"model": "a", "messages": HI, "tools": {"f": 1}}, "'tools' must be a list"),
    ({"model": 3.5, "messages": HI}, "'model' must be a string"),
    ({"request": "x"}, "'request' must be a JSON object"),
    ({"model": "a"}, "missing field 'messages'"),
    ({**GOOD}, "a mooncake line in a openai-chat log"),
    ({"model": "a", "messages": HI, "usage": {"completion_tokens": -2}}, "'completion_tokens' is negative"),
    ({"model": "a", "messages": HI, "usage": 7}, "'usage' must be a JSON object"),
    ({"model": "a", "messages": HI, "output_tokens": 10**11}, "'output_tokens' is too large"),
])
def test_bad_chat_line(tmp_path: Path, bad: Any, message: str) -> None:
    with pytest.raises(InputError) as err:
        ingest_rows(tmp_path, [{"model": "a", "messages": HI}, bad])
    assert err.value.line == 2 and message in err.value.reason


@pytest.mark.parametrize(("bad", "message"), [
    ({"model": "a", "prompt": ["a", "b"]}, "'prompt' is a batch of 2 prompts"),
    ({"model": "a", "prompt": []}, "'prompt' is empty"),
    ({"model": "a", "prompt": [1, -2]}, "'prompt[1]' is not a token id: -2"),
    ({"model": "a", "prompt": {"x": 1}}, "'prompt' must be a list of integers"),
])
def test_bad_completion_line(tmp_path: Path, bad: Any, message: str) -> None:
    with pytest.raises(InputError) as err:
        ingest_rows(tmp_path, [{"model": "a", "prompt": "x"}, bad])
    assert err.value.line == 2 and message in err.value.reason


def test_unknown_model_without_default_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        ingest_rows(tmp_path, [{"model": "llama3.2:1b", "messages": HI}], Config(default_tokenizer=None))
    assert err.value.line == 1 and "models.llama3.2:1b.tokenizer" in err.value.reason


def test_empty_blank_binary_and_corrupt_files(tmp_path: Path) -> None:
    cases = {"empty.jsonl": b"", "blank.jsonl": b"\n  \n\n", "binary.bin": bytes(range(256)) * 4,
             "latin1.jsonl": "{\"prompt\": \"caf\xe9\"}\n".encode("latin-1") * 3,
             "broken.jsonl.gz": gzip.compress(b'{"tokens": [1]}\n' * 100)[:40]}
    expect = {"empty.jsonl": "empty log", "blank.jsonl": "empty log", "binary.bin": "binary",
              "latin1.jsonl": "not UTF-8 text", "broken.jsonl.gz": "decompress"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=expect[name]):
            ingest(tmp_path / name, Config())
    late = tmp_path / "late.jsonl"
    late.write_bytes(b'{"tokens": [1]}\n' * 2 + '{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(InputError, match=r"late\.jsonl:3: not valid UTF-8"):
        ingest(late, Config())
    with pytest.raises(InputError, match="cannot tell the log format"):
        ingest_rows(tmp_path, [{"hello": 1}])
    with pytest.raises(InputError, match="no such file"):
        load_trace(tmp_path / "missing.jsonl", Config())
    with pytest.raises(InputError, match="not a file"):
        load_trace(tmp_path, Config())


def test_truncated_zstd_is_an_error_not_a_shorter_log(tmp_path: Path) -> None:
    # Cut after whole blocks: zstandard's stream reader would hand back the lines before the cut.
    data = b"".join(b'{"tokens": [%d]}\n' % i for i in range(200_000))
    packed = zstandard.ZstdCompressor().compress(data)
    (tmp_path / "cut.jsonl.zst").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InputError, match=r"cut\.jsonl\.zst: cannot decompress.*inside a zstd frame"):
        ingest(tmp_path / "cut.jsonl.zst", Config())
    two = zstandard.ZstdCompressor().compress(b'{"tokens": [1]}\n') + zstandard.ZstdCompressor().compress(
        b'{"tokens": [2]}\n')
    (tmp_path / "two.jsonl.zst").write_bytes(two)
    assert ingest(tmp_path / "two.jsonl.zst", Config()).table.column("token_ids").to_pylist() == [[1], [2]]


def test_unknown_format_flag(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--format: unknown format 'csv'"):
        ingest_rows(tmp_path, [GOOD], fmt="csv")


def test_skip_invalid_skips_and_counts(tmp_path: Path) -> None:
    rows = [GOOD, "{oops", {**GOOD, "input_length": -1}, {**GOOD, "timestamp": 2000}, [1]]
    t = ingest_rows(tmp_path, rows, skip_invalid=True)
    assert t.num_requests == 2 and t.meta.skipped_lines == 3
    assert t.table.column("request_id").to_pylist() == ["1", "4"]
    with pytest.raises(InputError, match=r"no valid request lines \(2 skipped\)"):
        ingest_rows(tmp_path, ["{oops", "[]"], skip_invalid=True)


def test_skip_invalid_drops_non_text_parts(tmp_path: Path) -> None:
    mixed = [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                          {"type": "image_url", "image_url": {"url": "x"}}]}]
    t = ingest_rows(tmp_path, [{"model": "a", "messages": mixed}], skip_invalid=True)
    plain = ingest_rows(tmp_path, [{"model": "a", "messages": HI}])
    assert t.table.column("token_ids").to_pylist() == plain.table.column("token_ids").to_pylist()
    assert t.meta.skipped_lines == 0


def test_cli_bad_line_exit_2_and_nothing_written(tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "log.jsonl", [GOOD, {**GOOD, "input_length": -5}])
    out = tmp_path / "trace.parquet"
    res = CliRunner().invoke(app, ["ingest", str(log), "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert "log.jsonl:2:" in res.output and "Traceback" not in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == [log]
    res = CliRunner().invoke(app, ["ingest", str(log), "-o", str(out), "--skip-invalid", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["skipped_lines"] == 1 and summary["total"]["requests"] == 1
    assert out.exists()


def test_cli_usage_errors(tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "log.jsonl", [GOOD])
    res = CliRunner().invoke(app, ["ingest", str(log), "--trace-block-size", "0"])
    assert res.exit_code == 2 and "--trace-block-size must be a positive" in res.output


def test_cli_unwritable_output_exit_2_without_traceback(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # short relative paths: the error box does not wrap them
    write_jsonl(tmp_path / "log.jsonl", [GOOD])
    Path("out").mkdir()
    Path("file").write_text("x")
    for target, message in (("out", "out: a folder"),
                            ("file/t.parquet", "file/t.parquet: cannot write there")):
        res = CliRunner().invoke(app, ["ingest", "log.jsonl", "-o", target])
        assert res.exit_code == 2, res.output
        assert message in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "log.jsonl", "out"]
