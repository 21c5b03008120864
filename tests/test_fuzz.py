"""Fuzz (issue 16): the log readers, the config loader and the baseline reader, fed random
JSON-ish input, either succeed or raise a ``KvernError`` (exit 2 with a message); anything else
would reach the user as a traceback. Bounded to a few seconds per reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvern.analysis.gate import Thresholds, evaluate, read_baseline
from kvern.infra.config import Config, GateConfig, load_config
from kvern.infra.errors import KvernError
from kvern.ingest.pipeline import ingest

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "\ud800",
            "a\udfffb",
            "",
            " ",
            "2025-01-01T00:00:00Z",
            "lru",
            "16",
            "-1",
            "1e308",
            "vllm",
            "8GiB",
            "\x00",
        ]
    ),
)
_number = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 0.5]),
)
_scalar = st.one_of(st.none(), st.booleans(), _number, _text)
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)

LOG_KEYS = [
    "model",
    "prompt",
    "messages",
    "tools",
    "prompt_token_ids",
    "hash_ids",
    "input_length",
    "output_length",
    "timestamp",
    "request_id",
    "session_id",
    "output_tokens",
    "request",
    "response",
    "usage",
    "chat_id",
    "parent_chat_id",
    "turn",
    "type",
    "hash_ids",
    "role",
    "content",
    "id",
]


@st.composite
def log_line(draw: st.DrawFn) -> bytes:
    """A line shaped like a log line (known keys, wild values), or wild JSON, or raw bytes."""
    kind = draw(st.sampled_from(["shaped", "shaped", "shaped", "json", "bytes", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40)).replace(b"\n", b" ")
    if kind == "deep":
        depth = draw(st.integers(50, 3000))
        return b'{"model": "m", "prompt": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "json":
        value: Any = draw(_json)
    else:
        keys = draw(st.lists(st.sampled_from(LOG_KEYS), min_size=1, max_size=5, unique=True))
        value = {k: draw(_json) for k in keys}
        if draw(st.booleans()):
            value["messages"] = [{"role": draw(_text), "content": draw(_json)}]
        if draw(st.booleans()):
            value["hash_ids"] = draw(st.lists(st.integers(-(2**65), 2**65), max_size=4))
            value["input_length"] = draw(_number)
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@FUZZ
@given(lines=st.lists(log_line(), min_size=1, max_size=3), skip=st.booleans())
def test_fuzz_readers_end_in_a_trace_or_an_input_error(
    tmp_path: Path, lines: list[bytes], skip: bool
) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    try:
        trace = ingest(path, Config(), skip_invalid=skip)
    except KvernError:
        return
    assert trace.num_requests >= 1


CONFIG_SHAPE = {
    "default_tokenizer": None,
    "normalize": None,
    "models": None,
    "output_dir": None,
    "ingest": ["block_size", "trace_block_size", "bailian_block_size", "hash_trace_model", "cache_dir"],
    "simulate": ["profile", "policies", "capacity", "params"],
    "savings": ["effective_flops"],
    "live": ["api_key_env", "timeout_s", "retries", "backoff_s", "default_max_tokens"],
    "gate": ["metric", "min_hit_rate", "max_drop", "policy", "capacity", "profile"],
}


@st.composite
def config_text(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["shaped", "shaped", "shaped", "yaml", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=60))
    if kind == "yaml":
        return draw(st.text(max_size=60)).encode("utf-8", "surrogatepass")
    doc: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(sorted(CONFIG_SHAPE)), min_size=1, max_size=3, unique=True)):
        subkeys = CONFIG_SHAPE[key]
        if subkeys is None:
            doc[key] = draw(_json)
        else:
            doc[key] = {
                k: draw(_json) for k in draw(st.lists(st.sampled_from(subkeys), max_size=3, unique=True))
            }
    if draw(st.booleans()):
        doc["normalize"] = [
            {
                "pattern": draw(st.sampled_from(["(a)", "(?P<x>b)", "[", "c"])),
                "replace": draw(st.sampled_from(["\\1", "\\2", "\\g<x>", "\\g<y>", "z", "\\q"])),
            }
        ]
    if draw(st.booleans()):
        doc["models"] = {
            draw(_text): {"geometry": {k: draw(_json) for k in ("layers", "kv_heads", "head_dim")}}
        }
    return yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass")


@FUZZ
@given(text=config_text())
def test_fuzz_config_loads_or_raises_a_usage_error(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(text)
    try:
        cfg = load_config(path)
    except KvernError:
        return
    assert isinstance(cfg, Config)


GOOD_ROW = {
    "policy": "lru",
    "profile": "vllm",
    "capacity_blocks": 100,
    "block_size": 16,
    "policy_label": "lru",
    "token_hit_rate": 0.5,
    "request_hit_rate": 0.5,
    "flops_saved_ratio": 0.25,
}
GOOD_BASELINE = {
    "kvern_baseline": 1,
    "policy": "lru",
    "profile": "vllm",
    "capacity_blocks": 100,
    "block_size": 16,
    "row": GOOD_ROW,
    "trace": "t.jsonl",
}


@st.composite
def baseline_text(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=60))
    if kind == "json":
        return json.dumps(draw(_json)).encode()
    doc = json.loads(json.dumps(GOOD_BASELINE))
    for _ in range(draw(st.integers(1, 3))):
        where = doc if draw(st.booleans()) else doc["row"]
        if not where:
            break
        key = draw(st.sampled_from(sorted(where)))
        if draw(st.integers(0, 4)) == 0:
            del where[key]
        else:
            where[key] = draw(_json)
        if not isinstance(doc.get("row"), dict):
            break
    return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")


@FUZZ
@given(text=baseline_text(), metric=st.sampled_from(["token_hit_rate", "request_hit_rate", "savings"]))
def test_fuzz_baseline_reads_or_raises_an_input_error(tmp_path: Path, text: bytes, metric: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_bytes(text)
    try:
        base = read_baseline(path)
        verdict = evaluate(GOOD_ROW, base, Thresholds.from_config(GateConfig(), metric, None, None))
    except KvernError:
        return
    assert 0.0 <= verdict.current <= 1.0
