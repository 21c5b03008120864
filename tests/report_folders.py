"""Real report folders for the report.html and dashboard tests, written by the CLI as a user
would write them: the shipped chat sample, two policies, small capacities (a few seconds)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from kvern.cli import app
from tests.trace_paths import CHAT_SAMPLE

COMMANDS: dict[str, tuple[list[str], int]] = {
    "compare": (["compare", "--policies", "lru,belady", "--capacity", "64,256", "--profile", "vllm"], 0),
    "sweep": (["sweep", "--policies", "lru,belady", "--points", "6", "--profile", "ideal"], 0),
    "analyze": (["analyze", "--show-text", "--no-measure", "--top-prefixes", "12"], 0),
    "gate": (["gate", "--min-hit-rate", "0.99", "--capacity", "256"], 1),  # fails: measures a rule
}


def run_cli(args: list[str], exit_code: int = 0) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == exit_code, (args, result.output, result.exception)
    return result.output


def flat(output: str) -> str:
    """An error panel's text on one line (the panel wraps long messages)."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())


def make_folders(base: Path) -> dict[str, Path]:
    """compare, sweep, analyze, gate folders from the CLI, and a live replay folder made by hand
    (a live one needs a server; its files follow kvern/live's layout)."""
    folders = {}
    for name, (args, code) in COMMANDS.items():
        folders[name] = base / name
        run_cli([args[0], str(CHAT_SAMPLE), *args[1:], "-o", str(folders[name]), "--quiet"], code)
    folders["live"] = make_live_folder(base / "live", folders["compare"] / "policies.png")
    return folders


LIVE_SUMMARY = {
    "agreed": 40, "agreement_rate": 0.8, "backend": "http://127.0.0.1:8080", "compared": 50, "failed": 0,
    "gap_causes": {"evicted": 6, "partial block": 4}, "mean_abs_gap": 12.5, "observed_cached_tokens": 7100,
    "observed_token_hit_rate": 0.71, "pacing": "4.0 req/s poisson", "partial": False,
    "predicted_cached_tokens": 7400, "predicted_token_hit_rate": 0.74, "profile": "llamacpp",
    "prompt_tokens": 10000, "requests": 50, "retries": 0, "stop_reason": None, "succeeded": 50,
    "ttft_p50_ms": 41.5, "ttft_p99_ms": 180.25, "wall_s": 13.2,
}


def make_live_folder(folder: Path, chart: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "live_summary.json").write_text(json.dumps(LIVE_SUMMARY, indent=2, sort_keys=True) + "\n")
    meta = {"backend": "http://127.0.0.1:8080", "trace": "chat_sample.jsonl", "pacing": "4.0 req/s poisson",
            "profile": "llamacpp", "requests_planned": 50, "partial": False}
    table = pa.table({"row": pa.array([0], pa.int64())}).replace_schema_metadata(
        {b"kvern.live": json.dumps(meta).encode()})
    pq.write_table(table, folder / "live.parquet")
    shutil.copy(chart, folder / "ttft_vs_cached.png")
    run_cli(["report", str(folder), "--quiet"])
    return folder
