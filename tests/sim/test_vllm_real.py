"""The vllm profile against vLLM's own BlockPool (skipped unless vLLM can be loaded; see vllm_real)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import BS, as_list, keys_of, make_stream, requests
from vllm_real import load, run

from kvern.infra.config import Config
from kvern.ingest.pipeline import load_trace
from kvern.ingest.stream import block_streams
from kvern.sim.simulate import simulate

MODULES = load()
pytestmark = pytest.mark.skipif(MODULES is None, reason="vLLM not installed and KVERN_VLLM_SRC not set")
ROOT = Path(__file__).resolve().parents[2]


@settings(max_examples=300, deadline=None)
@given(requests(), st.integers(1, 12))
def test_lru_equals_vllms_block_pool(reqs: list, capacity: int) -> None:
    res = simulate(make_stream(reqs, BS), "lru", capacity, "vllm")
    cached, unsched, evicted = run(MODULES, list(zip(keys_of(reqs), [p for _, p in reqs], strict=True)),
                                   BS, capacity)
    assert as_list(res.cached_tokens) == cached
    assert as_list(res.unschedulable) == [int(u) for u in unsched]
    assert res.evicted_blocks == evicted


@pytest.mark.slow
@pytest.mark.parametrize("trace_name", ["mooncake_conversation.jsonl", "chat_sample.jsonl"])
def test_shipped_traces_agree_request_by_request(trace_name: str) -> None:
    trace = load_trace(ROOT / "traces" / trace_name, Config())
    for model, stream in block_streams(trace).items():
        rows = stream.rows.tolist()
        keys = [trace.table.column("block_keys")[i].as_py() for i in rows]
        reqs = list(zip(keys, stream.prompt_tokens.tolist(), strict=True))
        for capacity in (20, 200, 2000, 20000):
            res = simulate(stream, "lru", capacity, "vllm")
            cached, unsched, evicted = run(MODULES, reqs, stream.block_size, capacity)
            assert as_list(res.cached_tokens) == cached, (model, capacity)
            assert as_list(res.unschedulable) == [int(u) for u in unsched], (model, capacity)
            assert res.evicted_blocks == evicted, (model, capacity)
