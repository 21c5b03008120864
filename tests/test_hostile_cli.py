"""Issue 16, classes 3, 4, 7 and 8: hostile input ends in exit 2 with a message that names the
file, line or flag; never a traceback, never exit 0 or 1, and no output half-written.

Most cases run on small hash-id (Mooncake) logs or Parquet traces, which need no tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kvern.cli import app

MOONCAKE_LINES = [
    {"timestamp": 0, "input_length": 1500, "output_length": 5, "hash_ids": [1, 2, 3]},
    {"timestamp": 1, "input_length": 1600, "output_length": 5, "hash_ids": [1, 2, 4, 5]},
    {"timestamp": 2, "input_length": 900, "output_length": 5, "hash_ids": [1, 2]},
]
DEEP = '{"model": "m", "prompt": ' + "[" * 10_000 + "]" * 10_000 + "}"


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "trace.jsonl", "".join(json.dumps(x) + "\n" for x in MOONCAKE_LINES))
    return tmp_path


def _invoke(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output


def _parquet(work: Path) -> Path:
    code, out = _invoke(["ingest", "trace.jsonl", "-o", "trace.parquet"])
    assert code == 0, out
    return work / "trace.parquet"


def _edit_parquet(work: Path, column: str, change: Callable[[list], list]) -> Path:
    table = pq.read_table(_parquet(work))
    i = table.schema.get_field_index(column)
    values = change(table.column(column).to_pylist())
    table = table.set_column(i, table.schema.field(column), pa.array(values, table.schema.field(column).type))
    pq.write_table(table, work / "edited.parquet")
    return work / "edited.parquet"


def _baseline(work: Path, change: Callable[[dict], None]) -> Path:
    code, out = _invoke(["gate", "trace.jsonl", "--baseline", "base.json", "--update-baseline"])
    assert code == 0, out
    doc = json.loads((work / "base.json").read_text())
    change(doc)
    _write(work / "bad_base.json", json.dumps(doc))
    return work / "bad_base.json"


def _set_row(key: str, value: object) -> Callable[[dict], None]:
    return lambda doc: doc["row"].__setitem__(key, value)


# (id, setup(work) -> args, what the message must say)
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    # class 3: tracebacks that must be exit 2
    (
        "deep-json",
        lambda w: ["ingest", str(_write(w / "d.jsonl", DEEP + "\n")), "-o", "o.parquet"],
        "d.jsonl:1: nested more than",
    ),
    (
        "deep-json-skip",
        lambda w: ["ingest", str(_write(w / "d.jsonl", DEEP + "\n")), "--skip-invalid", "-o", "o.parquet"],
        "no valid request lines",
    ),
    (
        "surrogate-prompt",
        lambda w: ["ingest", str(_write(w / "s.jsonl", '{"prompt": "a\\ud800b"}\n')), "-o", "o.parquet"],
        "s.jsonl:1: a lone UTF-16 surrogate",
    ),
    (
        "surrogate-model",
        lambda w: [
            "analyze",
            str(_write(w / "s.jsonl", '{"model": "\\udfff", "prompt": "x"}\n')),
            "-o",
            "rep",
        ],
        "s.jsonl:1: a lone UTF-16 surrogate",
    ),
    (
        "surrogate-content",
        lambda w: [
            "replay",
            str(_write(w / "s.jsonl", '{"messages": [{"role": "user", "content": "\\ud83d"}]}\n')),
            "--backend",
            "http://127.0.0.1:9",
            "-o",
            "rep",
        ],
        "s.jsonl:1: a lone UTF-16 surrogate",
    ),
    (
        "config-not-utf8",
        lambda w: [
            "replay",
            "trace.jsonl",
            "--config",
            str(_write(w / "c.yaml", b"ingest:\n  block_size: 16 \xff\n")),
            "-o",
            "rep",
        ],
        "c.yaml:2: not UTF-8",
    ),
    (
        "replace-group-number",
        lambda w: [
            "replay",
            "trace.jsonl",
            "--config",
            str(_write(w / "c.yaml", "normalize:\n  - {pattern: 'ab', replace: '\\1'}\n")),
            "-o",
            "rep",
        ],
        "c.yaml: normalize[0]: replace '\\\\1' does not fit pattern",
    ),
    (
        "replace-group-name",
        lambda w: [
            "replay",
            "trace.jsonl",
            "--config",
            str(_write(w / "c.yaml", "normalize:\n  - {pattern: '(?P<a>x)', replace: '\\g<b>'}\n")),
            "-o",
            "rep",
        ],
        "unknown group name 'b'",
    ),
    (
        "backend-port",
        lambda w: ["replay", "trace.jsonl", "--backend", "http://127.0.0.1:99999", "-o", "rep"],
        "--backend http://127.0.0.1:99999: not a valid URL",
    ),
    (
        "backend-ipv6",
        lambda w: ["replay", "trace.jsonl", "--backend", "http://[::1", "-o", "rep"],
        "--backend http://[::1: not a valid URL",
    ),
    (
        "baseline-high",
        lambda w: [
            "gate",
            "trace.jsonl",
            "--baseline",
            str(_baseline(w, _set_row("token_hit_rate", "high"))),
        ],
        "bad_base.json: corrupt",
    ),
    (
        "baseline-list",
        lambda w: ["gate", "trace.jsonl", "--baseline", str(_baseline(w, _set_row("token_hit_rate", [0.5])))],
        "bad_base.json: corrupt",
    ),
    (
        "baseline-5",
        lambda w: ["gate", "trace.jsonl", "--baseline", str(_baseline(w, _set_row("token_hit_rate", 5.0)))],
        "from 0 to 1, got 5.0",
    ),
    (
        "baseline-true",
        lambda w: ["gate", "trace.jsonl", "--baseline", str(_baseline(w, _set_row("token_hit_rate", True)))],
        "from 0 to 1, got true",
    ),
    (
        "baseline-deep",
        lambda w: ["gate", "trace.jsonl", "--baseline", str(_write(w / "b.json", DEEP))],
        "b.json: not a JSON baseline (nested",
    ),
    # class 4: capacities that would die of their own size
    (
        "capacity-8G",
        lambda w: ["replay", "trace.jsonl", "--capacity", "8G", "-o", "rep"],
        "--capacity 8G: ambiguous unit; write 8GiB or 8GB",
    ),
    ("sweep-1G", lambda w: ["sweep", "trace.jsonl", "--capacity", "1k:1G", "-o", "rep"], "ambiguous unit"),
    (
        "capacity-huge",
        lambda w: ["replay", "trace.jsonl", "--capacity", "9" * 30, "-o", "rep"],
        "is beyond any cache",
    ),
    # class 7: nonsense that used to be accepted
    (
        "analyze-profile",
        lambda w: [
            "analyze",
            "trace.jsonl",
            "--profile",
            "nope",
            "--policy",
            "nope",
            "--capacity",
            "abc",
            "-o",
            "rep",
        ],
        "--profile: unknown profile 'nope'",
    ),
    (
        "analyze-policy",
        lambda w: ["analyze", "trace.jsonl", "--policy", "nope", "-o", "rep"],
        "--policy: unknown policy 'nope'",
    ),
    (
        "analyze-capacity",
        lambda w: ["analyze", "trace.jsonl", "--capacity", "abc", "-o", "rep"],
        "--capacity: cannot read 'abc'",
    ),
    (
        "live-flags",
        lambda w: ["replay", "trace.jsonl", "--speedup", "2", "--api-key", "k", "-o", "rep"],
        "live-replay options without --backend URL (--speedup, --api-key)",
    ),
    ("rate-alone", lambda w: ["replay", "trace.jsonl", "--rate", "5", "-o", "rep"], "(--rate)"),
    (
        "block-size-true",
        lambda w: [
            "replay",
            "trace.jsonl",
            "--config",
            str(_write(w / "c.yaml", "ingest:\n  block_size: true\n")),
            "-o",
            "rep",
        ],
        "ingest.block_size",
    ),
    (
        "parquet-negative-prompt",
        lambda w: ["replay", str(_edit_parquet(w, "prompt_tokens", lambda v: [-5, *v[1:]])), "-o", "rep"],
        "edited.parquet: row 1 (request_id '1'): prompt_tokens",
    ),
    (
        "parquet-out-of-order",
        lambda w: ["sweep", str(_edit_parquet(w, "arrival_s", lambda v: v[::-1])), "-o", "rep"],
        "arrival_s goes back in time",
    ),
    # class 8: errors that teach
    (
        "config-typo",
        lambda w: [
            "replay",
            "trace.jsonl",
            "--config",
            str(_write(w / "c.yaml", "normalise: []\n")),
            "-o",
            "rep",
        ],
        "normalise: unknown key; did you mean `normalize`?",
    ),
    (
        "config-foreign",
        lambda w: [
            "replay",
            "trace.jsonl",
            "--config",
            str(_write(w / "c.yaml", "normalization:\n  llama:\n    - {pattern: 'x', placeholder: '<X>'}\n")),
            "-o",
            "rep",
        ],
        "models: {'llama': {normalize: [{pattern: 'x', replace: '<X>'}]}}",
    ),
    (
        "baseline-missing-metric",
        lambda w: [
            "gate",
            "trace.jsonl",
            "--metric",
            "request_hit_rate",
            "--baseline",
            str(_baseline(w, lambda d: d["row"].pop("request_hit_rate"))),
        ],
        "bad_base.json: the baseline has no request_hit_rate",
    ),
    (
        "policy-flag",
        lambda w: ["replay", "trace.jsonl", "--policy", "nope", "-o", "rep"],
        "--policy: unknown policy 'nope'",
    ),
]


@pytest.mark.parametrize("setup, said", [pytest.param(s, m, id=i) for i, s, m in CASES])
def test_hostile_input_is_exit_2_with_a_message_and_no_output(
    work: Path, setup: Callable[[Path], list[str]], said: str
) -> None:
    args = setup(work)
    before = {p: p.stat().st_mtime_ns for p in work.iterdir() if p.is_file()}
    code, out = _invoke(args)
    assert code == 2, out
    assert said in out, out
    assert "Traceback" not in out, out
    assert len([ln for ln in out.splitlines() if ln.startswith("kvern: error: ")]) == 1, out
    assert not (work / "rep").exists() and not (work / "o.parquet").exists()
    assert not [p for p in work.iterdir() if p.name.startswith(".")], "a staging folder or temp file was left"
    for p, mtime in before.items():  # nothing kvern read was touched
        assert p.stat().st_mtime_ns == mtime, p


def test_unquoted_capacity_in_the_config_is_read(work: Path) -> None:
    _write(work / "c.yaml", "simulate:\n  capacity: 3\ngate:\n  capacity: 2\n")
    code, out = _invoke(["replay", "trace.jsonl", "--config", "c.yaml", "-o", "rep", "--json", "-q"])
    assert code == 0, out
    assert [r["capacity"] for r in json.loads(out)["summary"]] == ["3"]


def test_a_capacity_beyond_the_trace_runs_at_the_trace_size_and_says_so(work: Path) -> None:
    code, out = _invoke(["replay", "trace.jsonl", "--capacity", "1000000000,4", "-o", "big", "--json"])
    assert code == 0, out
    assert "can ever fill in this trace" in out
    small = _invoke(["replay", "trace.jsonl", "--capacity", "1000", "-o", "small", "--json", "-q"])[1]
    rows = {r["capacity_blocks"]: r for r in json.loads(out[out.index("{") :])["summary"]}
    assert set(rows) == {1_000_000_000, 4}  # the report keeps the capacity asked for
    ref = json.loads(small)["summary"][0]
    assert rows[1_000_000_000]["cached_tokens"] == ref["cached_tokens"]
    assert rows[1_000_000_000]["evicted_blocks"] == 0
    noted = json.loads((work / "big" / "summary.json").read_text())["settings"]["capacity_bounded"]
    assert [n["capacities"] for n in noted] == [["1000000000"]]  # recorded, not only printed
    assert 4 < noted[0]["simulated_as_blocks"] < 1_000_000_000
    _invoke(["replay", "trace.jsonl", "--capacity", "4", "-o", "fits", "-q"])
    assert "capacity_bounded" not in json.loads((work / "fits" / "summary.json").read_text())["settings"]


def test_a_sweep_beyond_the_trace_records_the_bound(work: Path) -> None:
    code, out = _invoke(["sweep", "trace.jsonl", "--capacity", "2:1000000000", "--points", "4",
                         "--policies", "lru,fifo", "-o", "sw", "--no-charts", "-q"])
    assert code == 0, out
    noted = json.loads((work / "sw" / "sweep.json").read_text())["settings"]["capacity_bounded"]
    assert len(noted) == 1 and noted[0]["capacities"][-1] == 1_000_000_000
    assert all(c > noted[0]["simulated_as_blocks"] for c in noted[0]["capacities"])


def test_an_io_error_while_reading_is_exit_2_naming_the_file(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import kvern.ingest.source as source

    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: object) -> int:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(source, "_decompressed", lambda raw: Failing())
    _write(work / "chat.jsonl", '{"prompt": "x"}\n')
    code, out = _invoke(["ingest", "chat.jsonl", "-o", "o.parquet"])
    assert code == 2 and "chat.jsonl: " in out and "Input/output error" in out, out
    assert "Traceback" not in out and not (work / "o.parquet").exists()
