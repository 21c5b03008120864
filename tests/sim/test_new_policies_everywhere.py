"""Issue 12, item 3: every new policy runs under ``vllm`` as under ``ideal``, in ``sweep`` and in
``gate`` (CLI, on the first 300 requests of the Mooncake conversation trace)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import BS, make_stream, requests, run_engine
from trace_paths import MOONCAKE
from typer.testing import CliRunner

from kvern.cli import app

NEW = ["s3fifo", "arc", "sieve", "gdsf", "mru", "slru", "followup"]


@settings(max_examples=40, deadline=None)
@given(requests(), st.sampled_from(NEW), st.integers(1, 12))
def test_vllm_profile_serves_every_new_policy_within_its_pool(reqs: list, policy: str, capacity: int) -> None:
    stream = make_stream(reqs, BS)
    res, engine = run_engine("vllm", stream, policy, capacity)
    assert engine.used <= capacity
    assert all(0 <= c <= p for c, p in zip(res.cached_tokens.tolist(), stream.prompt_tokens.tolist(),
                                           strict=True))


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    log = tmp_path_factory.mktemp("trace") / "small.jsonl"
    log.write_text("\n".join(MOONCAKE.read_text().splitlines()[:300]) + "\n")
    return log


def test_sweep_draws_every_new_policy(small_log, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sweep"
    res = CliRunner().invoke(app, ["sweep", str(small_log), "--profile", "vllm", "--policies",
                                   ",".join(["lru", *NEW]), "--capacity", "50:2000", "--points", "3",
                                   "--jobs", "1", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {a["policy"] for a in doc["models"][0]["answers"]} == {"lru", *NEW}
    assert (out / "sweep.png").is_file()


@pytest.mark.parametrize("policy", NEW)
def test_gate_judges_every_new_policy(small_log, tmp_path, policy: str) -> None:  # type: ignore[no-untyped-def]
    base = tmp_path / "base.json"
    args = ["gate", str(small_log), "--policy", policy, "--capacity", "500", "--profile", "vllm",
            "--min-hit-rate", "0", "--baseline", str(base), "-q"]
    assert CliRunner().invoke(app, [*args, "--update-baseline"]).exit_code == 0
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
