"""No kvern write destroys a file: an output that is an input (by any name) or is not a regular
file is exit 2, with the input untouched and nothing written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from trace_paths import CHAT_SAMPLE, MOONCAKE
from typer.testing import CliRunner

from kvern.cli import app
from kvern.infra.errors import UsageError
from kvern.infra.files import check_target, register_input, write_json


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, [*args, "-q"])
    return res.exit_code, res.output


def _small_log(tmp_path: Path) -> Path:
    log = tmp_path / "log.jsonl"
    log.write_text("".join(MOONCAKE.read_text().splitlines(keepends=True)[:20]))
    return log


def test_ingest_onto_its_own_log_is_refused(tmp_path: Path) -> None:
    log = _small_log(tmp_path)
    before = log.read_bytes()
    code, out = _run("ingest", str(log), "-o", str(log))
    assert code == 2 and "input of this run" in out
    assert log.read_bytes() == before
    link = tmp_path / "other-name.parquet"  # the same file under another name
    link.symlink_to(log)
    code, out = _run("ingest", str(log), "-o", str(link))
    assert code == 2 and "input of this run" in out and link.is_symlink()
    assert log.read_bytes() == before


def test_output_onto_a_fifo_or_a_folder_is_refused(tmp_path: Path) -> None:
    log = _small_log(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, out = _run("ingest", str(log), "-o", str(fifo))
    assert code == 2 and "not a regular file" in out
    assert fifo.exists() and not fifo.is_file()
    code, out = _run("ingest", str(log), "-o", str(tmp_path))
    assert code == 2 and "a folder" in out


def test_gate_update_baseline_onto_the_trace_is_refused(tmp_path: Path) -> None:
    log = _small_log(tmp_path)
    before = log.read_bytes()
    code, out = _run("gate", str(log), "--baseline", str(log), "--update-baseline", "--profile", "ideal")
    assert code == 2 and "input of this run" in out
    assert log.read_bytes() == before


def test_a_report_never_replaces_its_input_trace(tmp_path: Path) -> None:
    # An ingested trace that sits in the report folder under a report file's name.
    folder = tmp_path / "r"
    folder.mkdir()
    trace = folder / "summary.parquet"
    assert _run("ingest", str(CHAT_SAMPLE), "-o", str(trace))[0] == 0
    before = trace.read_bytes()
    code, out = _run("compare", str(trace), "--policies", "lru", "--capacity", "64", "--profile", "ideal",
                     "-o", str(folder))
    assert code == 2 and "input of this run" in out
    assert trace.read_bytes() == before


def test_check_target_by_hand(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x")
    copy = tmp_path / "copy.txt"
    shutil.copy(src, copy)
    register_input(src)
    check_target(copy)  # same content, another file: fine
    check_target(tmp_path / "absent.json")
    with pytest.raises(UsageError, match="input of this run"):
        write_json({"a": 1}, src)
    assert src.read_text() == "x"
