"""Run-level API, report files and the replay / compare commands."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kvern.cli import app
from kvern.infra.config import Config, KVGeometry, ModelConfig
from kvern.infra.console import Output
from kvern.infra.errors import UsageError
from kvern.ingest.blocks import hash_id_block_keys
from kvern.ingest.trace import Trace, TraceMeta, with_meta
from kvern.report.tables import best_policies
from kvern.report.write import write_report
from kvern.sim.metrics import aggregate_rows
from kvern.sim.run import run_simulation

TINY = KVGeometry(layers=2, kv_heads=1, head_dim=4, dtype_bytes=2, hidden=4, params=1e9)
"""16 KV bytes per token; FLOPs per request = 2e9·c + 4·2·4·c(c−1)/2 = 2e9·c + 16·c(c−1)."""


def two_model_trace() -> Trace:
    # Model g (geometry known): [x,y] 8 tok, then [x,y,z] 10 tok. Model n: [x] 4, [x] 4.
    reqs = [("g", [1, 2], 8), ("n", [1], 4), ("g", [1, 2, 3], 10), ("n", [1], 4)]
    table = pa.table({
        "request_id": pa.array([f"q{i}" for i in range(4)], pa.string()),
        "arrival_s": pa.array([0.0, 1.0, 2.0, 3.0], pa.float64()),
        "model": pa.array([m for m, _, _ in reqs], pa.string()),
        "session_id": pa.array([None] * 4, pa.string()),
        "prompt_tokens": pa.array([p for _, _, p in reqs], pa.int32()),
        "output_tokens": pa.array([None] * 4, pa.int32()),
        "block_keys": pa.array([hash_id_block_keys(m, ids) for m, ids, _ in reqs], pa.list_(pa.uint64())),
        "token_ids": pa.array([None] * 4, pa.list_(pa.int32())),
    })
    meta = TraceMeta(block_size=4, source="two.jsonl", format="test")
    return Trace(with_meta(table, meta), meta)


def test_summary_rows_hit_rates_and_savings() -> None:
    cfg = Config(models={"g": ModelConfig(geometry=TINY)})
    trace = two_model_trace()
    res = run_simulation(trace, cfg, policies=["lru", "belady"], capacities=[10, "64 tok"], profile="vllm")
    rows = res.aggregate_rows()
    assert [(r["policy"], r["capacity"], r["capacity_blocks"]) for r in rows] == [
        ("lru", "10", 20), ("lru", "64 tok", 32), ("belady", "10", 20), ("belady", "64 tok", 32)]
    assert res.summary_rows()[:4] == rows  # the rows over the whole trace come first, as before
    r = rows[0]
    # g: r2 hits [x,y] = 8 tokens (capped at (10−1)//4 = 2 blocks); n: [x] of 4 tokens never hits.
    assert (r["model"], r["requests"], r["prompt_tokens"], r["cached_tokens"]) == ("*", 4, 26, 8)
    assert r["token_hit_rate"] == pytest.approx(8 / 26)
    assert r["request_hit_rate"] == 0.25
    assert r["mean_request_hit_ratio"] == pytest.approx((8 / 10) / 4)
    assert r["flops_saved"] is None and r["time_saved_s"] is None  # model n has no geometry
    assert r["gap_to_belady"] == 0.0
    assert res.requests.num_rows == 4 * 2 * 2

    # Then each model's own rows, in run order (model, policy, capacity); 64 tok = 16 blocks each.
    own = res.model_rows()
    assert res.summary_rows()[4:] == own
    assert [(r["model"], r["policy"], r["capacity"], r["capacity_blocks"]) for r in own] == [
        (m, p, c, b) for m in ("g", "n") for p in ("lru", "belady") for c, b in (("10", 10), ("64 tok", 16))]
    g, n = own[0], own[4]
    assert (g["requests"], g["prompt_tokens"], g["cached_tokens"], g["hit_requests"]) == (2, 18, 8, 1)
    assert g["token_hit_rate"] == pytest.approx(8 / 18)
    assert (g["request_hit_rate"], g["mean_request_hit_ratio"]) == (0.5, pytest.approx(0.8 / 2))
    g_saved, g_full = 2e9 * 8 + 16 * 8 * 7, (2e9 * 8 + 16 * 8 * 7) + (2e9 * 10 + 16 * 10 * 9)
    assert g["flops_saved"] == pytest.approx(g_saved)  # g has geometry: its own savings are known
    assert g["flops_saved_ratio"] == pytest.approx(g_saved / g_full)
    # n: a 4-token prompt may use at most (4 − 1) // 4 = 0 blocks under vllm.
    assert (n["requests"], n["prompt_tokens"], n["cached_tokens"], n["token_hit_rate"]) == (2, 8, 0, 0.0)
    assert n["flops_saved"] is None and n["time_saved_s"] is None
    assert g["gap_to_belady"] == 0.0 and n["gap_to_belady"] == 0.0  # each against its own Belady
    for agg in rows:  # the "*" row sums its models' rows
        parts = [o for o in own if (o["policy"], o["capacity"]) == (agg["policy"], agg["capacity"])]
        for col in ("requests", "prompt_tokens", "cached_tokens", "hit_requests", "capacity_blocks",
                    "evicted_blocks", "unschedulable_requests"):
            assert agg[col] == sum(o[col] for o in parts), col

    only_g = Trace(trace.table.filter(pa.compute.equal(trace.table.column("model"), "g")), trace.meta)
    res_g = run_simulation(only_g, cfg, policies="lru", capacities="10", profile="vllm")
    [row] = res_g.summary_rows()  # one model: one row per policy × capacity, no per-model rows
    assert res_g.model_rows() == [] and res_g.aggregate_rows() == [row]
    assert {k: v for k, v in row.items() if k != "gap_to_belady"} == {
        k: v for k, v in g.items() if k != "gap_to_belady"}  # g alone = g's own row in the pair
    saved, full = 2e9 * 8 + 16 * 8 * 7, (2e9 * 8 + 16 * 8 * 7) + (2e9 * 10 + 16 * 10 * 9)
    assert row["model"] == "g"
    assert row["flops_saved"] == pytest.approx(saved)
    assert row["flops_saved_ratio"] == pytest.approx(saved / full)
    assert row["time_saved_s"] == pytest.approx(saved / cfg.savings.effective_flops)


def test_bad_run_settings_are_usage_errors() -> None:
    trace = two_model_trace()
    with pytest.raises(UsageError, match="supports only the policies lru"):
        run_simulation(trace, Config(), policies="lfu", capacities="10", profile="sglang")
    with pytest.raises(UsageError, match=r"models\.g\.geometry"):
        run_simulation(trace, Config(), policies="lru", capacities="1MiB", profile="vllm")
    with pytest.raises(UsageError, match="unknown profile"):
        run_simulation(trace, Config(), policies="lru", capacities="10", profile="tgi")


def test_report_files_and_byte_identical_rerun(tmp_path: Path) -> None:
    cfg = Config(models={"g": ModelConfig(geometry=TINY)})
    for folder in (tmp_path / "a", tmp_path / "b"):
        res = run_simulation(two_model_trace(), cfg, policies="lru,lfu,belady", capacities="2,10",
                             profile="ideal")
        written = write_report(res, folder)
        assert {p.name for p in written} == {"requests.parquet", "summary.parquet", "summary.json",
                                             "policies.png", "capacity.png", "timeline.png"}
    a, b = (tmp_path / "a" / "summary.json").read_bytes(), (tmp_path / "b" / "summary.json").read_bytes()
    assert a == b
    doc = json.loads(a)
    assert doc["settings"]["profile"] == "ideal" and len(doc["summary"]) == 6 + 2 * 6
    assert pq.read_table(tmp_path / "a" / "requests.parquet").num_rows == 4 * 3 * 2
    assert not list(tmp_path.glob("*/.*.tmp"))  # no temp files left behind


def test_best_policy_ignores_belady_and_ties_go_to_the_first() -> None:
    rows = [{"policy": "lru", "capacity": "1", "token_hit_rate": 0.5},
            {"policy": "lfu", "capacity": "1", "token_hit_rate": 0.5},
            {"policy": "belady", "capacity": "1", "token_hit_rate": 0.9}]
    assert best_policies(rows) == {"1": "lru"}


def mooncake_log(path: Path) -> Path:
    lines = [{"timestamp": 0, "input_length": 1100, "output_length": 5, "hash_ids": [0, 1, 2]},
             {"timestamp": 500, "input_length": 1500, "output_length": 5, "hash_ids": [0, 1, 3]},
             {"timestamp": 900, "input_length": 700, "output_length": 5, "hash_ids": [4, 5]},
             {"timestamp": 1500, "input_length": 1300, "output_length": 5, "hash_ids": [0, 1, 2]}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_compare_command_writes_the_report_and_marks_the_best(tmp_path: Path) -> None:
    log = mooncake_log(tmp_path / "moon.jsonl")
    out = tmp_path / "rep"
    result = CliRunner().invoke(app, ["compare", str(log), "--policies", "lru,fifo,belady",
                                      "--capacity", "3,100", "--profile", "ideal", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "★" in result.output
    assert (out / "summary.json").is_file() and (out / "capacity.png").is_file()


def test_replay_json_and_bad_capacity(tmp_path: Path) -> None:
    log = mooncake_log(tmp_path / "moon.jsonl")
    result = CliRunner().invoke(app, ["replay", str(log), "--capacity", "4", "--json", "-o",
                                      str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    row = doc["summary"][0]
    assert (row["policy"], row["profile"], row["capacity_blocks"]) == ("lru", "vllm", 4)
    # r1 shares [0, 1] = 1024 tokens; r3 repeats r0's [0, 1, 2]: hit capped at 2 blocks.
    assert row["cached_tokens"] == 1024 + 1024
    bad = CliRunner().invoke(app, ["replay", str(log), "--capacity", "8 parsecs", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2
    assert not (tmp_path / "x").exists()


def test_param_flags() -> None:
    from kvern.commands.common import parse_params

    assert parse_params(["lfu.half_life=50", "cost.attn_ratio=1e-4"]) == {
        "lfu": {"half_life": "50"}, "cost": {"attn_ratio": "1e-4"}}
    with pytest.raises(UsageError, match=r"expected POLICY\.KEY=VALUE"):
        parse_params(["lfu.half_life"])
    with pytest.raises(UsageError, match="unknown policies: lrfu"):
        run_simulation(two_model_trace(), Config(), policies="lru", capacities="10", profile="ideal",
                       params={"lrfu": {"x": 1}})
    with pytest.raises(UsageError, match=r"unknown parameter 'decay' \(valid: half_life\)"):
        run_simulation(two_model_trace(), Config(), policies="lfu", capacities="10", profile="ideal",
                       params={"lfu": {"decay": 1}})


def test_gate_and_tables_take_the_rows_over_the_whole_trace() -> None:
    from rich.console import Console

    from kvern.analysis.measure import SimSetting, setting_row
    from kvern.report.tables import per_model_renderable, summary_renderable

    cfg = Config(models={"g": ModelConfig(geometry=TINY)})
    res = run_simulation(two_model_trace(), cfg, policies="lru,fifo,belady", capacities="10", profile="vllm")
    rows = res.summary_rows()
    assert len(rows) == 3 + 2 * 3
    assert [r["model"] for r in aggregate_rows(rows) if r["policy"] == "lru"] == ["*"]
    assert [r for r in aggregate_rows(rows[::-1]) if r["policy"] == "lru"] == [rows[0]]  # the "*" row
    row = setting_row(two_model_trace(), cfg, SimSetting("lru", "10", "vllm"), Output(quiet=True))
    assert row == {**rows[0], "gap_to_belady": None}  # the gate runs lru alone: no Belady
    # The table ranks the "*" rows; the per-model lines follow, 80 columns wide.
    assert best_policies(rows) == {"10": "lru"}
    console = Console(width=80, record=True, color_system=None)
    console.print(summary_renderable(res))
    text = console.export_text()
    assert "per model" in text and max(len(line) for line in text.splitlines()) <= 80
    lines = [line.split() for line in text.splitlines()]
    # capacity "10" is 10 blocks, so no blocks column
    assert ["g", "10", "★44.44%", "44.44%", "44.44%"] in lines  # g: 8 of 18 tokens
    assert ["n", "10", "★0.00%", "0.00%", "0.00%"] in lines
    one = run_simulation(two_model_trace(), cfg, policies="lru", capacities="10", profile="vllm")
    assert per_model_renderable(one).row_count == 2
    single = run_simulation(Trace(two_model_trace().table.slice(0, 1), two_model_trace().meta), cfg,
                            policies="lru", capacities="10", profile="vllm")
    console = Console(width=80, record=True, color_system=None)
    console.print(summary_renderable(single))
    assert "per model" not in console.export_text()
