"""The sglang profile against SGLang's own RadixCache (skipped unless KVERN_SGLANG_SRC is set).

See ``sglang_real.py``: SGLang runs in a child process on the same requests, in batches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sim_helpers import as_list, make_token_stream

from kvern.infra.config import Config
from kvern.ingest.pipeline import load_trace
from kvern.ingest.stream import BlockStream, block_streams
from kvern.sim.simulate import simulate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
pytestmark = pytest.mark.skipif(not os.environ.get("KVERN_SGLANG_SRC"),
                                reason="KVERN_SGLANG_SRC (an unpacked SGLang wheel) not set")


def sglang(batches: list[dict]) -> list[dict]:
    done = subprocess.run([sys.executable, str(HERE / "sglang_real.py")], input=json.dumps(batches),
                          capture_output=True, text=True, check=True, timeout=600)
    return json.loads(done.stdout)


def as_pages(stream: BlockStream) -> list[list]:
    """What the scheduler hands the tree per request: pages, pages needed, most pages to match."""
    out = []
    for r in range(stream.num_requests):
        p = int(stream.prompt_tokens[r])
        if stream.token_ids is not None:
            out.append([stream.tokens_of(r).tolist(), p, p - 1])
        else:
            ids = stream.blocks_of(r).tolist()
            out.append([ids[: p // stream.block_size], len(ids), (p - 1) // stream.block_size])
    return out


def check(streams: list[BlockStream], capacities: list[int]) -> None:
    """Every stream at every capacity (in blocks), SGLang in one child process."""
    cases = [(s, c) for s in streams for c in capacities]
    got = sglang([{"capacity": c * (1 if s.token_ids is None else s.block_size), "requests": as_pages(s)}
                  for s, c in cases])
    for (stream, c), theirs in zip(cases, got, strict=True):
        unit = stream.block_size if stream.token_ids is None else 1
        ours = simulate(stream, "lru", c, "sglang")
        assert as_list(ours.cached_tokens) == [h * unit for h in theirs["cached"]], c
        assert as_list(ours.unschedulable) == [int(u) for u in theirs["unschedulable"]], c
        assert ours.evicted_blocks == theirs["evicted"], c


def test_random_token_traces() -> None:
    rng = np.random.default_rng(7)
    streams = []
    for _ in range(200):
        prompts = [rng.integers(0, 3, rng.integers(1, 12)).tolist() for _ in range(rng.integers(1, 25))]
        streams.append(make_token_stream(prompts, 4))
    check(streams, [1, 2, 3, 5])


@pytest.mark.slow
@pytest.mark.parametrize("trace_name", ["chat_sample.jsonl", "mooncake_conversation.jsonl"])
def test_shipped_traces_agree_request_by_request(trace_name: str) -> None:
    trace = load_trace(ROOT / "traces" / trace_name, Config())
    check(list(block_streams(trace).values()), [20, 64, 256, 1024])
