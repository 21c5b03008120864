"""``kvern cluster`` end to end: files, determinism, what it refuses, one replica = replay."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kvern.cli import app


def moon(path: Path, n: int = 60) -> Path:
    # conversations of 3 turns over 10 system-prompt-like first blocks, 512-token hash ids
    lines = []
    for i in range(n):
        conv, turn = i // 3, i % 3
        ids = [conv % 10] + [100 + conv * 10 + t for t in range(turn + 2)]
        lines.append({"timestamp": i * 200, "input_length": 512 * len(ids) - 100, "output_length": 20,
                      "hash_ids": ids})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_cluster_writes_a_deterministic_report(tmp_path: Path) -> None:
    log = moon(tmp_path / "moon.jsonl")
    args = ["cluster", str(log), "--replicas", "1,2,4", "--capacity", "8", "--profile", "vllm",
            "--offload", "cpu=40", "--param", "sglang.cache_threshold=0.3"]
    a, b = tmp_path / "a", tmp_path / "b"
    r1 = CliRunner().invoke(app, [*args, "-o", str(a)])
    assert r1.exit_code == 0, r1.output
    r2 = CliRunner().invoke(app, [*args, "-o", str(b), "--jobs", "2"])  # settings in two processes
    assert r2.exit_code == 0, r2.output
    for name in ("cluster.parquet", "summary.parquet", "summary.json", "cluster_hit_rate.png",
                 "cluster_frontier.png", "cluster_offload.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    doc = json.loads((a / "summary.json").read_text())
    rows = doc["summary"]
    assert len(rows) == 2 * 3 * 7  # offload none/cpu × replicas × routers
    assert {r["router_label"] for r in rows} >= {"sglang(cache_threshold=0.3)", "round-robin"}
    assert doc["settings"]["offload_admission"] == "store"
    assert all(r["model"] == "default" for r in rows)
    req = pq.read_table(a / "cluster.parquet")
    assert req.num_rows == 60 * len(rows)
    # one replica: every router gives the same, replay's, numbers
    ones = [r for r in rows if r["replicas"] == 1 and r["offload"] == "none"]
    assert len({r["gpu_tokens"] for r in ones}) == 1
    replay = CliRunner().invoke(app, ["replay", str(log), "--capacity", "8", "--profile", "vllm", "--json",
                                      "-o", str(tmp_path / "rep")])
    assert replay.exit_code == 0, replay.output
    rep = json.loads((tmp_path / "rep" / "summary.json").read_text())["summary"][0]
    assert ones[0]["gpu_tokens"] == rep["cached_tokens"]
    assert "hit" in r1.output and "round-robin" in r1.output and "one cache" in r1.output
    assert "sglang*" in r1.output and "non-default parameters: sglang(cache_threshold=0.3)" in r1.output


def test_cluster_refuses_what_it_cannot_model(tmp_path: Path) -> None:
    log = moon(tmp_path / "moon.jsonl", 6)
    cases = [
        (["--policy", "belady"], "Belady"),
        (["--profile", "sglang", "--offload", "cpu=10"], "not modelled"),
        (["--router", "nope"], "unknown router"),
        (["--param", "dynamo.bogus=1"], "valid:"),
        (["--replicas", "0"], "at least one"),
        (["--offload", "disk=10"], "CPU tier"),
    ]
    for extra, message in cases:
        r = CliRunner().invoke(app, ["cluster", str(log), "--capacity", "8", "-o", str(tmp_path / "x"),
                                     *extra])
        assert r.exit_code == 2, (extra, r.output)
        assert message in r.output, (extra, r.output)


def test_whole_trace_rows_compare_replicas_within_a_models_fleet(tmp_path: Path) -> None:
    # The chat sample has two models, each with its own fleet. One replica each is no
    # imbalance and no spread, however different the two models' traffic; with two, the
    # whole-trace imbalance is the models' own, weighted by their prefill tokens, and the
    # spread the fleets' lowest and highest replica hit rates weighted by prompt tokens.
    from trace_paths import CHAT_SAMPLE

    out = tmp_path / "cl"
    res = CliRunner().invoke(app, ["cluster", str(CHAT_SAMPLE), "--replicas", "1,2", "--router",
                                   "round-robin,prefix", "--capacity", "300", "--profile", "ideal", "-o",
                                   str(out), "-q"])
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "summary.json").read_text())["summary"]
    whole = [r for r in rows if r["model"] == "*"]
    assert len({r["model"] for r in rows}) == 3 and len(whole) == 4
    for r in whole:
        own = [x for x in rows
               if x["model"] != "*" and (x["replicas"], x["router"]) == (r["replicas"], r["router"])]
        work = [x["prompt_tokens"] - x["cached_tokens"] for x in own]
        for key in ("prefill_imbalance_max_mean", "prefill_imbalance_cv"):
            weighted = sum(x[key] * w for x, w in zip(own, work, strict=True)) / sum(work)
            assert r[key] == pytest.approx(weighted)
        prompts = [x["prompt_tokens"] for x in own]
        for key in ("replica_hit_rate_min", "replica_hit_rate_max"):
            weighted = sum(x[key] * w for x, w in zip(own, prompts, strict=True)) / sum(prompts)
            assert r[key] == pytest.approx(weighted)
        assert r["replica_hit_rate_min"] - 1e-12 <= r["token_hit_rate"] <= r["replica_hit_rate_max"] + 1e-12
        if r["replicas"] == 1:
            assert r["prefill_imbalance_max_mean"] == 1.0 and r["prefill_imbalance_cv"] == 0.0
            assert r["replica_hit_rate_min"] == pytest.approx(r["replica_hit_rate_max"])
            assert r["replica_hit_rate_min"] == pytest.approx(r["token_hit_rate"])
