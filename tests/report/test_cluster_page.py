"""A ``kvern cluster`` folder is read as a cluster run (not as a comparison) and its page shows
every setting's numbers from summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from trace_paths import CHAT_SAMPLE
from typer.testing import CliRunner

from kvern.cli import app
from kvern.report.folder import read_folder


def test_cluster_folder_and_page(tmp_path: Path) -> None:
    out = tmp_path / "cl"
    res = CliRunner().invoke(app, ["cluster", str(CHAT_SAMPLE), "--replicas", "1,2", "--router",
                                   "round-robin,prefix", "--capacity", "300", "--profile", "ideal", "-o",
                                   str(out), "-q"])
    assert res.exit_code == 0, res.output
    folder = read_folder(out)
    assert folder.kind == "cluster"
    rows = json.loads((out / "summary.json").read_text())["summary"]
    head = folder.headline()
    assert head["replicas"] == 2
    assert head["token hit rate"] == max(r["token_hit_rate"] for r in rows if r["replicas"] == 2
                                         and r["model"] == "*")
    page = (out / "report.html").read_text()
    assert "replicas behind routers" in page and "Replicas × routers" in page
    for r in rows:
        assert f"{100 * r['token_hit_rate']:.2f}%" in page
    assert page.count("data:image/png;base64,") == len(folder.charts) >= 2
