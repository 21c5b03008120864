"""The sweep: the exact LRU curve equals the simulator, answers, parallel runs, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from curve_helpers import Request, make_stream, make_trace, mooncake_stream, prefix_requests
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import run_engine
from trace_paths import MOONCAKE

from kvern.infra.config import Config
from kvern.infra.errors import UsageError
from kvern.ingest.blocks import hash_id_block_keys
from kvern.report.sweep import curve_table, points_table, sweep_document, write_sweep
from kvern.sim.curve import lru_curve
from kvern.sim.policies import make_policy
from kvern.sim.profiles.ideal import Ideal
from kvern.sim.simulate import simulate
from kvern.sim.sweep import Answer, run_sweep, unbounded_capacity

BS = 4


def _heap_engine() -> Ideal:
    """The ideal profile's policy-generic engine, with LRU's compiled shortcut turned off."""
    engine = Ideal()
    engine.lru_kernel = False
    return engine


def _sim_totals(stream, cap: int) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    res = _heap_engine().simulate(stream, make_policy("lru"), cap)
    return res.total_cached_tokens, int(res.hit.sum()), res.evicted_blocks


def _assert_kernel_equals_heap_engine(stream, cap: int) -> None:  # type: ignore[no-untyped-def]
    slow, heap_engine = run_engine(_heap_engine(), stream, "lru", cap)
    fast, fast_engine = run_engine(Ideal(), stream, "lru", cap)
    assert np.array_equal(fast.cached_tokens, slow.cached_tokens), cap
    assert fast.evicted_blocks == slow.evicted_blocks, cap
    assert np.array_equal(fast_engine.cached_blocks(), heap_engine.cached_blocks()), cap
    assert fast.cached_tokens.dtype == slow.cached_tokens.dtype


@settings(max_examples=80, deadline=None)
@given(prefix_requests(block_size=BS), st.integers(1, 40))
def test_ideal_lru_dispatches_to_the_kernel_with_identical_results(requests: list[Request], cap: int) -> None:
    _assert_kernel_equals_heap_engine(make_stream(requests, BS), cap)


@settings(max_examples=80, deadline=None)
@given(prefix_requests(block_size=BS))
def test_curve_equals_the_ideal_lru_simulation_at_every_capacity(requests: list[Request]) -> None:
    stream = make_stream(requests, BS)
    curve = lru_curve(stream)  # the ideal profile has no last-token rule
    for cap in range(1, curve.num_unique + 2):
        p = curve.at(cap)
        assert (p.cached_tokens, p.hit_requests, p.evicted_blocks) == _sim_totals(stream, cap), cap


def test_curve_equals_the_ideal_lru_simulation_on_mooncake() -> None:
    stream = mooncake_stream(MOONCAKE)
    curve = lru_curve(stream)
    for cap in (1, 37, 1000, 8296, 31435, curve.num_unique):
        p = curve.at(cap)
        assert (p.cached_tokens, p.hit_requests, p.evicted_blocks) == _sim_totals(stream, cap), cap
        _assert_kernel_equals_heap_engine(stream, cap)


# A trace whose answers can be worked by hand: three prompts sharing a 2-block system prompt.
#   r0 [1,2,3] r1 [1,2,4] r2 [1,2,3] r3 [1,2,4], 12 tokens each, block size 4.
# Infinite cache: r1 finds 1,2 (8), r2 finds 1,2,3 (12), r3 finds 1,2,4 (12) -> 32 tokens.
# Stack distances at arrival: r1: 1,2 | r2: 1,2,4 | r3: 1,2,4, so the LRU curve is
#   C=1: 12, C=2: 24, C=3: 24, C=4: 32 cached tokens.
HAND: list[Request] = [([1, 2, 3], 12), ([1, 2, 4], 12), ([1, 2, 3], 12), ([1, 2, 4], 12)]


def _cfg() -> Config:
    return Config.model_validate({"models": {"m": {"geometry": {
        "layers": 2, "kv_heads": 1, "head_dim": 64, "dtype_bytes": 2}}}})


def test_answers_by_hand() -> None:
    result = run_sweep(make_trace(HAND, BS), _cfg(), policies="lru,belady", profile="ideal",
                       capacity="1:4", points=4, jobs=1)
    (m,) = result.models
    assert m.achievable_tokens == 32
    assert m.capacities == [1, 2, 3, 4]
    assert [p.cached_tokens for p in m.points if p.policy == "lru"] == [12, 24, 24, 32]
    lru = {a.percent: a for a in m.answers if a.policy == "lru"}
    # 50%: 16 tokens -> C=2; 80%: 25.6 -> 26 -> C=4; 90%, 95% -> C=4.
    assert {k: (a.target_tokens, a.capacity_blocks, a.exact) for k, a in lru.items()} == {
        50: (16, 2, True), 80: (26, 4, True), 90: (29, 4, True), 95: (31, 4, True)}
    # KV bytes per token = 2 * 2 layers * 1 head * 64 * 2 bytes = 512; 4 blocks = 16 tokens.
    assert lru[90].capacity_bytes == 16 * 512
    assert lru[90].words() == ("to reach 90% of the achievable token hit rate with lru you need 4 blocks "
                               "= 16 tokens = 0.00 GiB of KV for m")
    assert all(not a.exact for a in m.answers if a.policy == "belady")


def test_answer_words_without_geometry_and_out_of_range() -> None:
    a = Answer("m", "lfu", 95, 100, None, False, 16, None)
    assert "not reached" in a.words()
    b = Answer("m", "lfu", 50, 100, 10, False, 16, None)
    assert b.words() == ("to reach 50% of the achievable token hit rate with lfu you need at most 10 blocks "
                         "= 160 tokens = n/a GiB (no KV geometry: set models.m.geometry) of KV for m "
                         "(the smallest sampled capacity that reaches it)")


@settings(max_examples=15, deadline=None)
@given(prefix_requests(max_requests=30, block_size=BS))
def test_lru_points_from_the_curve_equal_simulated_points(requests: list[Request]) -> None:
    trace = make_trace(requests, BS)
    result = run_sweep(trace, _cfg(), policies="lru", profile="ideal", capacity="1:64", points=5, jobs=1)
    (m,) = result.models
    stream = make_stream(requests, BS)
    for p in m.points:
        res = simulate(stream, "lru", p.capacity_blocks, "ideal")
        assert (p.cached_tokens, p.hit_requests, p.evicted_blocks) == (
            res.total_cached_tokens, int(res.hit.sum()), res.evicted_blocks)
        ratio = float(np.sum(res.cached_tokens / res.prompt_tokens))
        assert p.hit_ratio_sum == pytest.approx(ratio, rel=1e-12, abs=1e-12)


def test_parallel_equals_serial_and_reruns_are_byte_identical(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = [json.loads(line) for line in MOONCAKE.read_text().splitlines()[:1500]]
    reqs = [(hash_id_block_keys("default", r["hash_ids"]), r["input_length"]) for r in rows]
    trace = make_trace(reqs, 512)
    kw = {"policies": "lru,fifo,belady", "capacity": "100:5000", "points": 4}
    serial = run_sweep(trace, _cfg(), profile="vllm", jobs=1, **kw)
    parallel = run_sweep(trace, _cfg(), profile="vllm", jobs=2, **kw)
    assert points_table(serial).equals(points_table(parallel))
    write_sweep(serial, tmp_path / "a")
    write_sweep(parallel, tmp_path / "b")
    assert (tmp_path / "a" / "sweep.json").read_bytes() == (tmp_path / "b" / "sweep.json").read_bytes()
    doc = sweep_document(serial)
    assert doc["settings"]["exact_lru_curve"] is False
    assert not (tmp_path / "a" / "lru_curve.parquet").exists()
    assert all(not a["exact"] for a in doc["models"][0]["answers"])


def test_default_jobs_fork_only_for_work_worth_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``--jobs``, a sweep whose runs are small runs them here; a large one uses every
    core. Told ``--jobs``, it forks as told."""
    import kvern.sim.sweep as sweep_mod

    made: list[int] = []
    real = sweep_mod.LocalExecutor
    monkeypatch.setattr(sweep_mod, "LocalExecutor", lambda jobs: made.append(jobs) or real(1))
    monkeypatch.setattr(sweep_mod, "all_cores", lambda: 8)
    rows = [json.loads(line) for line in MOONCAKE.read_text().splitlines()[:200]]
    trace = make_trace([(hash_id_block_keys("default", r["hash_ids"]), r["input_length"]) for r in rows], 512)
    kw = {"policies": "fifo,belady", "capacity": "100:5000", "points": 3, "profile": "vllm"}
    run_sweep(trace, _cfg(), **kw)
    run_sweep(trace, _cfg(), jobs=2, **kw)
    monkeypatch.setattr(sweep_mod, "IN_PROCESS_BELOW", 1)
    run_sweep(trace, _cfg(), **kw)
    assert made[:2] == [1, 2] and made[2] > 2  # all cores, or one per run if fewer


def test_non_ideal_profile_simulates_lru_and_finds_the_achievable_rate() -> None:
    result = run_sweep(make_trace(HAND, BS), _cfg(), policies="lru", profile="vllm", capacity="4:64",
                       points=3, jobs=1)
    (m,) = result.models
    assert m.curve is None
    assert {p.source for p in m.points} == {"simulation"}
    big = simulate(make_stream(HAND, BS), "lru", 10_000, "vllm")
    assert m.achievable_tokens == big.total_cached_tokens


@settings(max_examples=40, deadline=None)
@given(prefix_requests(max_requests=20, block_size=BS), st.sampled_from(["vllm", "sglang"]))
def test_unbounded_capacity_never_evicts(requests: list[Request], profile: str) -> None:
    stream = make_stream(requests, BS)
    res = simulate(stream, "lru", unbounded_capacity(stream), profile)
    assert res.evicted_blocks == 0
    assert not res.unschedulable.any()
    huge = simulate(stream, "lru", 10 * len(stream.block_ids) + 10, profile)
    assert np.array_equal(res.cached_tokens, huge.cached_tokens)


def test_curve_table_is_lossless(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_sweep(make_trace(HAND, BS), _cfg(), policies="lru", profile="ideal", capacity="1:4",
                       points=4, jobs=1)
    table = curve_table(result).to_pylist()
    assert [(r["capacity_blocks"], r["cached_tokens"]) for r in table] == [(0, 0), (1, 12), (2, 24), (4, 32)]
    written = write_sweep(result, tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["lru_curve.parquet", "sweep.json", "sweep.parquet", "sweep.png"]


def test_without_lru_the_achievable_rate_still_equals_the_curves_end() -> None:
    result = run_sweep(make_trace(HAND, BS), _cfg(), policies="belady", profile="ideal", capacity="1:4",
                       points=4, jobs=1)
    (m,) = result.models
    assert m.curve is None and not result.exact_lru
    assert m.achievable_tokens == int(lru_curve(make_stream(HAND, BS)).cached_tokens[-1]) == 32
    # Belady: C=2 keeps the shared prefix 1,2 (24 tokens); C=3 keeps 3 for r2, not 4 (used
    # later), so r1, r2, r3 find 8 + 12 + 8 = 28; C=4 keeps everything (32).
    # Targets 16, 26, 29, 31 tokens -> 2, 3, 4, 4 blocks.
    assert [a.capacity_blocks for a in m.answers] == [2, 3, 4, 4]
    assert [p.cached_tokens for p in m.points] == [12, 24, 28, 32]


def test_bad_sweep_settings() -> None:
    trace = make_trace(HAND, BS)
    with pytest.raises(UsageError, match="--points"):
        run_sweep(trace, _cfg(), policies="lru", profile="ideal", points=1)
    with pytest.raises(UsageError, match="policy"):
        run_sweep(trace, _cfg(), policies="nope", profile="ideal")
    with pytest.raises(UsageError, match="unknown parameter"):
        run_sweep(trace, _cfg(), policies="lru", profile="ideal", params={"lru": {"x": 1}})
    with pytest.raises(UsageError, match="--jobs"):
        run_sweep(trace, _cfg(), policies="lru,fifo", profile="ideal", capacity="1:4", jobs=0)


def test_cli_sweep(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from kvern.cli import app

    log = tmp_path / "small.jsonl"
    log.write_text("\n".join(MOONCAKE.read_text().splitlines()[:400]) + "\n")
    out = tmp_path / "report"
    args = ["sweep", str(log), "--profile", "ideal", "--policies", "lru,fifo,belady",
            "--capacity", "10:2000", "--points", "5", "--jobs", "2", "-o", str(out)]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    answers = doc["models"][0]["answers"]
    assert {(a["policy"], a["percent"]) for a in answers} == {
        (p, q) for p in ("lru", "fifo", "belady") for q in (50, 80, 90, 95)}
    assert sorted(p.name for p in out.iterdir()) == ["lru_curve.parquet", "report.html", "sweep.json",
                                                     "sweep.parquet", "sweep.png"]
    first = (out / "sweep.json").read_bytes()
    assert CliRunner().invoke(app, [*args, "--quiet"]).exit_code == 0
    assert (out / "sweep.json").read_bytes() == first

    bad = CliRunner().invoke(app, ["sweep", str(log), "--capacity", "5:oops", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2
    assert "--capacity" in bad.output
    assert not (tmp_path / "x").exists()


def test_default_capacities_span_a_thousandth_to_all_blocks() -> None:
    from kvern.sim.sweep import _capacities

    reqs: list[Request] = [([k * 100 + i for i in range(5)], 20) for k in range(2000)]  # 10,000 blocks
    stream = make_stream(reqs, BS)
    exact = _capacities(stream, None, 4, _cfg(), "m", exact=True)
    assert exact == [10, 100, 1000, 10000]
    assert _capacities(stream, None, 4, _cfg(), "m", exact=False)[-1] == 10005  # + the longest request
