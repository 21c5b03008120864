"""A real headless Chromium opens every report.html and the running dashboard, checks that the
expected text and numbers are rendered, and saves screenshots.

Chromium is the system's (Debian's ``chromium`` package; ``KVERN_CHROMIUM`` names another),
driven by Playwright pointed at that executable: Playwright's own browser download is not
needed. Without a Chromium the tests skip and say so; ``scripts/test`` installs it where it
can. ``KVERN_UPDATE_SCREENSHOTS=1`` also writes the README's two screenshots to docs/img/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS_IMG = ROOT / "docs" / "img"
UPDATE = os.environ.get("KVERN_UPDATE_SCREENSHOTS") == "1"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1200, "height": 860}


def chromium() -> str | None:
    for name in (os.environ.get("KVERN_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; scripts/test installs "
                    "it when run as root), or set KVERN_CHROMIUM")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def _shot(page: Any, tmp_path: Path, name: str) -> Path:
    """A screenshot in the test's folder and, with KVERN_UPDATE_SCREENSHOTS=1, in docs/img/."""
    path = tmp_path / name
    page.screenshot(path=str(path))
    if UPDATE:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMG / name)
    return path


def test_report_html_renders_in_chromium(page: Any, report_folders: dict[str, Path], tmp_path: Path) -> None:
    for kind, folder in report_folders.items():
        page.goto((folder / "report.html").as_uri())
        assert page.locator("h1").inner_text().startswith(f"kvern {kind}:")
        images = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
        assert images == [True] * len(list(folder.glob("*.png")))
        page.screenshot(path=str(tmp_path / f"report-{kind}.png"), full_page=True)
    # the numbers of the comparison, as a person sees them
    rows = json.loads((report_folders["compare"] / "summary.json").read_text())["summary"]
    lru = next(r for r in rows if r["model"] == "*" and r["policy"] == "lru" and r["capacity"] == "64")
    page.goto((report_folders["compare"] / "report.html").as_uri())
    row = page.locator("tr", has_text="lru ★").first
    assert f"{lru['token_hit_rate']:.2%}" in row.inner_text()
    _shot(page, tmp_path, "report-html.png")
    # the hot-prefix tree opens on a click and shows the prefix's text
    hot = json.loads((report_folders["analyze"] / "analysis.json").read_text())["hot_prefixes"][0]
    page.goto((report_folders["analyze"] / "report.html").as_uri())
    node = page.locator(".tree > details").first
    assert not node.locator("pre").first.is_visible()
    node.locator("summary").first.click()
    assert hot["text"].split("\n")[0] in node.locator("pre").first.inner_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def dashboard(report_folders: dict[str, Path]) -> Iterator[str]:
    """``kvern dashboard REPORTS_DIR --port N`` as a user starts it; its URL once it answers."""
    pytest.importorskip("streamlit", reason="no dashboard extra: pip install 'kvern[dashboard]'")
    if chromium() is None:
        pytest.skip("no Chromium on this machine (see test_report_html_renders_in_chromium)")
    port = _free_port()
    root = next(iter(report_folders.values())).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "kvern", "dashboard", str(root), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"kvern dashboard exited {proc.returncode}: {proc.stdout.read().decode()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the dashboard did not answer within 60 s")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the dashboard and the streamlit server it started
        proc.wait(timeout=20)


def test_dashboard_renders_in_chromium(page: Any, dashboard: str, report_folders: dict[str, Path],
                                       tmp_path: Path) -> None:
    from playwright.sync_api import expect

    rows = json.loads((report_folders["compare"] / "summary.json").read_text())["summary"]
    whole = [r for r in rows if r["model"] == "*"]
    page.goto(dashboard)
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    expect(page.get_by_text("5 report folder(s)")).to_be_visible()
    expect(page.get_by_test_id("stMetricValue").first).to_be_visible()
    # Policies: the best policy and its exact hit rate, and the chart drawn
    page.get_by_role("link", name="Policies").click()
    lru = next(r for r in whole if r["policy"] == "lru" and r["capacity"] == "64")
    expect(page.get_by_text("Best online policy")).to_contain_text(f"{lru['token_hit_rate']:.2%}")
    expect(page.locator(".vega-embed canvas, .vega-embed svg").first).to_be_visible()
    page.wait_for_timeout(500)  # let the charts finish their transition before the picture
    _shot(page, tmp_path, "dashboard.png")
    # Capacity: the sweep's chart and answers
    page.get_by_role("link", name="Capacity").click()
    sweep = json.loads((report_folders["sweep"] / "sweep.json").read_text())["models"][0]
    expect(page.get_by_text(f"{sweep['model']}: capacity to reach")).to_contain_text(
        f"{sweep['achievable_token_hit_rate']:.2%}")
    expect(page.locator(".vega-embed canvas, .vega-embed svg").first).to_be_visible()
    # Prefix tree: a node opens on a click
    page.get_by_role("link", name="Prefix tree").click()
    hot = json.loads((report_folders["analyze"] / "analysis.json").read_text())["hot_prefixes"][0]
    summary = page.locator(".tree > details > summary").first
    expect(summary).to_contain_text(f"{hot['tokens_saved']:,} tokens saved")
    summary.click()
    expect(page.locator(".tree > details pre").first).to_contain_text(hot["text"].split("\n")[0])
    # Breakers
    page.get_by_role("link", name="Breakers").click()
    lost = json.loads((report_folders["analyze"] / "analysis.json").read_text())["lost_tokens"]
    expect(page.get_by_text("Cacheable tokens lost")).to_contain_text(f"{lost:,}")
    page.screenshot(path=str(tmp_path / "dashboard-breakers.png"))
