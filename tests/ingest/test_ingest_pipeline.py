"""load_trace: Parquet in, the ingest cache, normalization, determinism, the shipped traces."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from ingest_helpers import ingest_rows, write_jsonl
from trace_paths import MOONCAKE, ROOT
from typer.testing import CliRunner

from kvern.cli import app
from kvern.infra.config import Config, ModelConfig, NormalizeRule
from kvern.ingest.cache import cache_dir
from kvern.ingest.pipeline import load_trace
from kvern.ingest.trace import Trace, read_trace, write_trace
from kvern.sim.bounds import summarize

CHAT_SAMPLE = ROOT / "traces" / "chat_sample.jsonl"
DATE = NormalizeRule(name="iso-date", pattern=r"\b\d{4}-\d{2}-\d{2}\b", replace="<DATE>")


def _dated(day: str) -> dict[str, object]:
    return {"model": "a", "messages": [{"role": "system", "content": f"Today is {day}. Be brief."},
                                       {"role": "user", "content": "hi"}]}


def test_cache_is_reused_and_keyed_by_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVERN_INGEST_CACHE", str(tmp_path / "cache"))
    hi = [{"role": "user", "content": "hi"}]
    log = write_jsonl(tmp_path / "log.jsonl", [{"model": "a", "messages": hi}])
    cfg = Config()
    first = load_trace(log, cfg)
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1
    # Plant a marker in the entry: a second run must return it instead of re-tokenizing.
    marked = Trace(first.table, dataclasses.replace(first.meta, source="from-cache"))
    write_trace(marked, entries[0])
    assert load_trace(log, cfg).meta.source == "from-cache"
    assert load_trace(log, cfg, no_cache=True).meta.source == "log.jsonl"  # bypassed and refreshed
    assert load_trace(log, cfg).meta.source == "log.jsonl"
    # Every setting that changes rows gives its own entry.
    load_trace(log, Config(ingest=cfg.ingest.model_copy(update={"block_size": 8})))
    load_trace(log, Config(normalize=[DATE]))
    load_trace(log, cfg, no_normalize=True)
    load_trace(log, cfg, model="b")
    assert len(list((tmp_path / "cache").iterdir())) == 5
    log.write_text(log.read_text().replace("hi", "ho"))
    assert load_trace(log, cfg).table.column("token_ids") != first.table.column("token_ids")


def test_cache_dir_lookup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KVERN_INGEST_CACHE", str(tmp_path / "env"))
    assert cache_dir(Config()) == tmp_path / "env"
    monkeypatch.delenv("KVERN_INGEST_CACHE")
    cfg = Config(ingest=Config().ingest.model_copy(update={"cache_dir": str(tmp_path / "cfg")}))
    assert cache_dir(cfg) == tmp_path / "cfg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir(Config()) == tmp_path / "xdg" / "kvern" / "ingest"


def test_parquet_round_trip_and_accepted_as_input(tmp_path: Path) -> None:
    t = ingest_rows(tmp_path, [{"model": "a", "prompt": "Hello world", "timestamp": 3}])
    write_trace(t, tmp_path / "t.parquet")
    back = load_trace(tmp_path / "t.parquet", Config())
    assert back.table.equals(t.table) and back.meta == t.meta


def test_normalization_rules(tmp_path: Path) -> None:
    rows = [_dated("2025-03-03"), _dated("2025-03-04")]
    plain = ingest_rows(tmp_path, rows)
    ids = plain.table.column("token_ids").to_pylist()
    assert ids[0] != ids[1] and not plain.meta.normalized
    norm = ingest_rows(tmp_path, rows, Config(normalize=[DATE]))
    nids = norm.table.column("token_ids").to_pylist()
    assert nids[0] == nids[1] and norm.meta.normalized
    assert summarize(norm).total.infinite_cache_hit_rate > summarize(plain).total.infinite_cache_hit_rate
    assert ingest_rows(tmp_path, rows, Config(normalize=[DATE]), no_normalize=True).table.equals(plain.table)
    # A model's own list replaces the global one (here: no rules at all for model "a").
    own = Config(normalize=[DATE], models={"a": ModelConfig(normalize=[])})
    assert ingest_rows(tmp_path, rows, own).table.equals(plain.table)


def test_rules_apply_in_order() -> None:
    from kvern.ingest.normalize import Normalizer

    n = Normalizer([NormalizeRule(pattern="a+", replace="b"), NormalizeRule(pattern="bb", replace="c")])
    assert n.text("aa-ab") == "b-c"
    assert n.messages([{"role": "user", "content": "aab"}]) == [{"role": "user", "content": "c"}]


def test_same_input_same_bytes(tmp_path: Path) -> None:
    for name in ("a.parquet", "b.parquet"):
        t = ingest_rows(tmp_path, [_dated("2025-03-03"), {"model": "b", "prompt": "x", "timestamp": 1}])
        write_trace(t, tmp_path / name)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_mooncake_conversation_trace() -> None:
    t = load_trace(MOONCAKE, Config())
    assert t.num_requests == 12031 and t.meta.block_size == 512
    s = summarize(t)
    assert s.total.prompt_tokens == sum(json.loads(line)["input_length"] for line in MOONCAKE.open())
    assert 0.3 < s.total.infinite_cache_hit_rate < 0.45
    shipped = load_trace(ROOT / "traces" / "mooncake_conversation.jsonl", Config())
    assert shipped.table.equals(t.table)


def test_chat_sample_cli(tmp_path: Path) -> None:
    out = tmp_path / "chat.parquet"
    res = CliRunner().invoke(app, ["ingest", str(CHAT_SAMPLE), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["total"]["requests"] == 409
    assert {m["model"] for m in summary["models"]} == {"qwen2.5-7b-instruct", "llama3.1-8b"}
    t = read_trace(out)
    assert t.meta.tokenizers == {"llama3.1-8b": "kvern:qwen2.5", "qwen2.5-7b-instruct": "kvern:qwen2.5"}
    lengths = [len(x) for x in t.table.column("token_ids").to_pylist()]
    assert t.table.column("prompt_tokens").to_pylist() == lengths
