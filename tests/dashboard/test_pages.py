"""Each dashboard page, run headless by Streamlit's own AppTest on real report folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="no dashboard extra: pip install 'kvern[dashboard]'")
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from kvern.cli import app
from kvern.dashboard.launch import APP, streamlit_command
from tests.report_folders import flat

TIMEOUT = 60


def _page(module: str, dirs: list[str]) -> None:
    """The script AppTest runs: one page over the report folders in ``dirs``."""
    import importlib

    from kvern.dashboard.data import load_runs

    importlib.import_module(f"kvern.dashboard.pages.{module}").render(load_runs(dirs))


def _run(module: str, root: Path) -> AppTest:
    at = AppTest.from_function(_page, args=(module, [str(root)]), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(scope="module")
def root(report_folders: dict[str, Path]) -> Path:
    return next(iter(report_folders.values())).parent


def test_runs_lists_every_folder_and_compares_two(root: Path, report_folders: dict[str, Path]) -> None:
    at = _run("runs", root)
    table = at.dataframe[0].value
    assert sorted(table["command"]) == sorted(report_folders)
    compare = json.loads((report_folders["compare"] / "summary.json").read_text())["summary"]
    at_256 = [r for r in compare if r["model"] == "*" and r["policy"] != "belady" and r["capacity"] == "256"]
    best = max(at_256, key=lambda r: r["token_hit_rate"])
    at.selectbox(key="run_a").select_index(list(table["command"]).index("compare")).run()
    at.selectbox(key="run_b").select_index(list(table["command"]).index("compare")).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["token hit rate"] == f"{best['token_hit_rate']:.2%}"
    assert metrics["best policy"] == best["policy"]
    # the same run on both sides: every numeric delta is zero
    assert {m.delta for m in at.metric if m.delta} <= {"+0.00 pt", "+0"}
    at.selectbox(key="run_b").select_index(list(table["command"]).index("sweep")).run()
    diff = at.dataframe[1].value
    assert diff["differs"].iloc[0]  # differing settings come first


def test_policies_chart_and_numbers(root: Path, report_folders: dict[str, Path]) -> None:
    at = _run("policies", root)
    assert at.selectbox(key="policies_run").options == ["compare · compare · chat_sample.jsonl"]
    rows = json.loads((report_folders["compare"] / "summary.json").read_text())["summary"]
    lru_64 = next(r for r in rows if r["model"] == "*" and r["policy"] == "lru" and r["capacity"] == "64")
    best_line = next(m.value for m in at.markdown if m.value.startswith("Best online policy"))
    assert f"all models @ 64: **lru** {lru_64['token_hit_rate']:.2%}" in best_line
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2  # bars, and hit rate against capacity (two capacities)
    at.selectbox(key="policies_metric").select("request hit rate").run()
    at.radio(key="policies_axis").set_value("linear").run()
    at.multiselect(key="policies_models").set_value(["qwen2.5-7b-instruct", "llama3.1-8b"]).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert set(table["model"]) == {"qwen2.5-7b-instruct", "llama3.1-8b"}
    at.multiselect(key="policies_policies").set_value([]).run()
    assert any("choose at least one" in i.value for i in at.info)


def test_capacity_answers_and_axes(root: Path, report_folders: dict[str, Path]) -> None:
    at = _run("capacity", root)
    doc = json.loads((report_folders["sweep"] / "sweep.json").read_text())
    first = doc["models"][0]
    answers = at.dataframe[0].value
    lru90 = next(a for a in first["answers"] if a["policy"] == "lru" and a["percent"] == 90)
    row = answers[(answers["policy"] == "lru") & (answers["share"] == "90%")].iloc[0]
    assert row["blocks"] == lru90["capacity_blocks"] and row["in words"] == lru90["words"]
    assert len(at.get("vega_lite_chart")) == 1
    for unit in ("tokens", "GiB of KV"):
        at.selectbox(key="capacity_unit").select(unit).run()
        assert not at.exception
    at.radio(key="capacity_axis").set_value("linear").run()
    at.multiselect(key="capacity_models").set_value([m["model"] for m in doc["models"]]).run()
    assert not at.exception and len(at.dataframe) == len(doc["models"])


def test_prefix_tree_shows_the_hot_prefixes(root: Path, report_folders: dict[str, Path]) -> None:
    at = _run("prefix_tree", root)
    hot = json.loads((report_folders["analyze"] / "analysis.json").read_text())["hot_prefixes"]
    tree = at.get("html")[0].proto.body
    assert tree.count("<details>") == len(hot)
    assert f"<b>{hot[0]['tokens_saved']:,}</b> tokens saved" in tree
    table = at.dataframe[0].value
    assert list(table["tokens_saved"]) == [h["tokens_saved"] for h in hot]
    assert "text" in table.columns  # the run was made with --show-text


def test_breakers_of_analyze_and_gate(root: Path, report_folders: dict[str, Path]) -> None:
    at = _run("breakers", root)
    doc = json.loads((report_folders["analyze"] / "analysis.json").read_text())
    assert list(at.dataframe[0].value["lost tokens"]) == [b["lost_tokens"] for b in doc["breakers"]]
    labels = at.selectbox(key="breakers_run").options
    at.selectbox(key="breakers_run").select_index(next(i for i, o in enumerate(labels) if "gate" in o)).run()
    gate = json.loads((report_folders["gate"] / "gate.json").read_text())
    assert any("Gate verdict: **FAILED**" in m.value for m in at.markdown)
    assert json.dumps(gate["rule_gains"][0]["rule"]["pattern"]) in at.code[0].value
    measured = at.dataframe[0].value["measured"].tolist()
    assert any(m.startswith("token hit rate") for m in measured)


@pytest.mark.parametrize("module", ["runs", "policies", "capacity", "prefix_tree", "breakers"])
def test_pages_without_runs_say_how_to_make_one(module: str, tmp_path: Path) -> None:
    at = _run(module, tmp_path)
    assert at.info and "kvern" in at.info[0].value


def test_the_app_opens_on_runs(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry script (page navigation itself is exercised in the browser test)."""
    monkeypatch.setattr(sys, "argv", [str(APP), str(root)])
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception and at.title[0].value == "Runs"
    assert "5 report folder(s)" in at.sidebar.caption[0].value


def test_dashboard_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["dashboard", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such directory" in flat(missing.output)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "streamlit" else real(name))
    no_extra = runner.invoke(app, ["dashboard", str(tmp_path)])
    assert no_extra.exit_code == 2 and "pip install 'kvern[dashboard]'" in flat(no_extra.output)
    cmd = streamlit_command([tmp_path], port=8599, host="127.0.0.1")
    assert cmd[cmd.index("--") + 1:] == [str(tmp_path.resolve())] and "--server.port=8599" in cmd
