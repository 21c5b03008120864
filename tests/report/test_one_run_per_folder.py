"""Issue 16, class 6: a report folder always holds one run, and a second Ctrl-C never makes it
worse than the first (kvern.infra.files.replaced_folder, kvern.commands.common.write_folder)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvern.cli import app
from kvern.infra.files import replaced_folder, signals_held
from kvern.report.folder import is_report_file

LINES = [
    {"timestamp": 0, "input_length": 1500, "output_length": 5, "hash_ids": [1, 2, 3]},
    {"timestamp": 1, "input_length": 1600, "output_length": 5, "hash_ids": [1, 2, 4, 5]},
    {"timestamp": 2, "input_length": 900, "output_length": 5, "hash_ids": [1, 2]},
]


@pytest.fixture
def trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in LINES))
    return path


def _run(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_rerun_with_fewer_capacities_leaves_no_old_chart(trace: Path) -> None:
    _run("compare", str(trace), "--capacity", "2,4", "-o", "rep", "-q")
    assert (Path("rep") / "capacity.png").exists()
    Path("rep/notes.txt").write_text("mine")
    _run("replay", str(trace), "--capacity", "4", "-o", "rep", "-q")
    names = set(os.listdir("rep"))
    assert "capacity.png" not in names  # one capacity: no capacity chart, and no old one
    assert "notes.txt" in names  # not kvern's: never touched
    assert not [n for n in os.listdir(".") if n.startswith(".")]  # no staging folder left


def test_a_sweep_under_another_profile_leaves_no_old_curve(trace: Path) -> None:
    _run("sweep", str(trace), "--profile", "ideal", "--points", "3", "--jobs", "1", "-o", "rep", "-q")
    assert (Path("rep") / "lru_curve.parquet").exists()
    _run("sweep", str(trace), "--profile", "vllm", "--points", "3", "--jobs", "1", "-o", "rep", "-q")
    assert not (Path("rep") / "lru_curve.parquet").exists()
    assert {"sweep.json", "sweep.parquet", "sweep.png", "report.html"} <= set(os.listdir("rep"))


def test_ctrl_c_while_writing_leaves_the_previous_run_whole(
    trace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run("compare", str(trace), "--capacity", "2,4", "-o", "rep", "-q")
    before = _files(Path("rep"))

    def interrupted(*_a: object, **_k: object) -> list[Path]:
        raise KeyboardInterrupt  # the second Ctrl-C, while the charts are drawn

    monkeypatch.setattr("kvern.report.charts.write_charts", interrupted)
    res = CliRunner().invoke(app, ["compare", str(trace), "--capacity", "3", "-o", "rep", "-q"])
    assert res.exit_code == 130, res.output
    assert _files(Path("rep")) == before
    res = CliRunner().invoke(app, ["compare", str(trace), "--capacity", "3", "-o", "fresh", "-q"])
    assert res.exit_code == 130 and not Path("fresh").exists()  # no empty or half folder
    assert not [n for n in os.listdir(".") if n.startswith(".")]


def test_stale_temp_files_of_a_killed_run_are_kvern_files() -> None:
    assert is_report_file(".summary.json.k2j3h4.tmp") and is_report_file("capacity.png")
    assert not is_report_file("notes.txt") and not is_report_file(".bashrc")


def test_a_failed_commit_check_moves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "rep"
    folder.mkdir()
    (folder / "summary.json").mkdir()  # a folder where a file must go: refused before any move
    (folder / "sweep.json").write_text("old")
    with pytest.raises(Exception, match=r"summary\.json"), replaced_folder(folder, is_report_file) as staged:
        (staged / "summary.json").write_text("new")
        (staged / "requests.parquet").write_text("new")
    assert sorted(os.listdir(folder)) == ["summary.json", "sweep.json"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_ctrl_c_is_held_back_during_the_swap() -> None:
    order = []
    with pytest.raises(KeyboardInterrupt), signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # a Ctrl-C not held would be raised here
        order.append("swap finished")
    assert order == ["swap finished"]
