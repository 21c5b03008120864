"""report.html: written by every command that writes a report folder, self-contained,
escaped, deterministic; ``kvern report DIR`` rewrites it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from kvern.cli import app
from kvern.report.folder import find_folders, read_folder
from kvern.report.html import REPORT_FILE, write_html
from tests.report_folders import LIVE_SUMMARY, flat, run_cli
from tests.trace_paths import CHAT_SAMPLE

_DATA_URI = re.compile(r'<img alt="([^"]+)" src="data:image/png;base64,[A-Za-z0-9+/=]+">')


def _html(folder: Path) -> str:
    return (folder / REPORT_FILE).read_text(encoding="utf-8")


def test_every_kind_writes_a_self_contained_page(report_folders: dict[str, Path]) -> None:
    for kind, folder in report_folders.items():
        html = _html(folder)
        report = read_folder(folder)
        assert report.kind == kind
        assert f"kvern {kind}:" in html
        # every chart embedded, nothing fetched, no script, no path of this machine
        pngs = sorted(p.name for p in folder.glob("*.png"))
        assert sorted(_DATA_URI.findall(html)) == pngs
        assert pngs or kind == "gate"  # the gate writes no chart
        assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", html)
        assert "<script" not in html
        assert str(folder.parent) not in html and str(Path.home()) not in html
        assert not list(folder.glob(".*.tmp")), "a temp file was left behind"


def test_compare_page_shows_the_summary(report_folders: dict[str, Path]) -> None:
    folder = report_folders["compare"]
    html = _html(folder)
    rows = json.loads((folder / "summary.json").read_text())["summary"]
    for r in (r for r in rows if r["model"] == "*"):
        assert f"{r['token_hit_rate']:.2%}" in html
        assert f"{r['cached_tokens']:,}" in html
    assert "lru ★" in html  # the best online policy is marked
    assert "policies.png" in html and "capacity.png" in html and "timeline.png" in html


def test_sweep_page_shows_the_capacity_answers(report_folders: dict[str, Path]) -> None:
    html = _html(report_folders["sweep"])
    doc = json.loads((report_folders["sweep"] / "sweep.json").read_text())
    for m in doc["models"]:
        assert f"{m['achievable_token_hit_rate']:.2%}" in html
        for a in m["answers"]:
            if a["capacity_blocks"] is not None and a["target_cached_tokens"]:
                assert f"{a['capacity_blocks']:,}" in html
            if a["policy"] == "lru":
                assert a["words"] in html


def test_analyze_page_has_breakers_and_a_collapsible_tree(report_folders: dict[str, Path]) -> None:
    html = _html(report_folders["analyze"])
    doc = json.loads((report_folders["analyze"] / "analysis.json").read_text())
    assert doc["breakers"] and doc["hot_prefixes"]
    for b in doc["breakers"]:
        assert _esc(b["pattern"]) in html
    top = doc["hot_prefixes"][0]
    assert f"<b>{top['tokens_saved']:,}</b> tokens saved · {top['reuses']:,} reuses" in html
    assert html.count("<details>") >= len(doc["hot_prefixes"])
    assert _esc(top["text"]) in html  # --show-text: the text is in the data, so on the page


def test_gate_page_shows_the_verdict_and_the_measured_rule(report_folders: dict[str, Path]) -> None:
    html = _html(report_folders["gate"])
    doc = json.loads((report_folders["gate"] / "gate.json").read_text())
    assert not doc["passed"] and doc["rule_gains"]
    assert '<span class="fail">FAILED</span>' in html
    assert f"{doc['verdict']['current']:.2%}" in html
    assert "Rules to paste into config.yaml" in html and _esc(doc["rule_gains"][0]["rule"]["pattern"]) in html


def test_live_page_reads_the_summary_and_the_trace_name(report_folders: dict[str, Path]) -> None:
    html = _html(report_folders["live"])
    assert "kvern live: live replay · chat_sample.jsonl · profile llamacpp" in html
    assert "71.00%" in html and "74.00%" in html and "180.2" in html
    assert f"gap cause: evicted</th><td>{LIVE_SUMMARY['gap_causes']['evicted']}" in html


def test_rerun_is_byte_identical(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    args = ["replay", str(CHAT_SAMPLE), "--capacity", "64", "--profile", "vllm", "-o", str(folder), "-q"]
    run_cli(args)
    first = (folder / REPORT_FILE).read_bytes()
    run_cli(args)
    assert (folder / REPORT_FILE).read_bytes() == first
    run_cli(["report", str(folder), "-q"])
    assert (folder / REPORT_FILE).read_bytes() == first
    assert read_folder(folder).kind == "replay"


def test_prompt_text_is_escaped(tmp_path: Path, report_folders: dict[str, Path]) -> None:
    folder = tmp_path / "evil"
    shutil.copytree(report_folders["analyze"], folder)
    doc = json.loads((folder / "analysis.json").read_text())
    doc["hot_prefixes"][0]["text"] = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    doc["breakers"][0]["pattern"] = "Today is <b>DATE</b> & \"quoted\""
    doc["breakers"][0]["example"] = "</td></tr></table><h1>owned</h1>"
    (folder / "analysis.json").write_text(json.dumps(doc))
    html = write_html(folder).read_text()
    assert "<script>" not in html and "<img src=x" not in html and "<h1>owned" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Today is &lt;b&gt;DATE&lt;/b&gt; &amp; &quot;quoted&quot;" in html


def test_partial_run_is_marked(tmp_path: Path, report_folders: dict[str, Path]) -> None:
    folder = tmp_path / "partial"
    shutil.copytree(report_folders["compare"], folder)
    doc = json.loads((folder / "summary.json").read_text())
    doc["settings"].update(partial=True, not_run=["qwen2.5-7b-instruct × lru × 256"])
    (folder / "summary.json").write_text(json.dumps(doc))
    html = write_html(folder).read_text()
    assert "<b>PARTIAL</b>" in html and "not run: qwen2.5-7b-instruct × lru × 256" in html


def test_report_command_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such directory" in flat(missing.output)
    empty = runner.invoke(app, ["report", str(tmp_path)])
    assert empty.exit_code == 2 and "not a report folder" in flat(empty.output)
    (tmp_path / "summary.json").write_text("{not json")
    garbled = runner.invoke(app, ["report", str(tmp_path)])
    assert garbled.exit_code == 2 and "summary.json: not valid JSON" in flat(garbled.output)
    assert isinstance(garbled.exception, SystemExit)  # a message, no traceback


def test_find_folders_walks_a_tree(report_folders: dict[str, Path], tmp_path: Path) -> None:
    root = next(iter(report_folders.values())).parent
    found = find_folders([root])
    assert sorted(f.kind for f in found) == sorted(report_folders)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sweep.json").write_text("[]")
    errors: list[str] = []
    assert find_folders([tmp_path, tmp_path / "missing"], errors) == []
    assert len(errors) == 2 and "expected a JSON object" in errors[0]


def _esc(text: str) -> str:
    from html import escape

    return escape(text, quote=True)
