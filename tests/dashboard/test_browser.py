"""A real headless Chromium opens every report.html and the running dashboard, checks that the
expected text and numbers are rendered, and saves screenshots.

Chromium is the system's (Debian's ``chromium`` package; ``KVERN_CHROMIUM`` names another),
driven by Playwright pointed at that executable: Playwright's own browser download is not
needed. Without a Chromium the tests skip and say so; ``scripts/test`` installs it where it
can. ``KVERN_UPDATE_SCREENSHOTS=1`` also writes the README's two screenshots to docs/img/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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

from tests.proxy.proxy_helpers import HERE as PROXY_TESTS
from tests.proxy.proxy_helpers import Proc, chat, wait_http
from tests.proxy.proxy_helpers import env as proxy_env

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


@contextlib.contextmanager
def _serving(*args: str, cwd: Path | None = None) -> Iterator[str]:
    """``kvern dashboard ARGS --port N`` as a user starts it; its URL once it answers. Stopped
    (with the streamlit server it started) on leaving."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "kvern", "dashboard", *args, "--port", str(port)],
                            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
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


@pytest.fixture(scope="module")
def dashboard(report_folders: dict[str, Path]) -> Iterator[str]:
    """The dashboard over the session's report folders."""
    pytest.importorskip("streamlit", reason="no dashboard extra: pip install 'kvern[dashboard]'")
    if chromium() is None:
        pytest.skip("no Chromium on this machine (see test_report_html_renders_in_chromium)")
    with _serving(str(next(iter(report_folders.values())).parent)) as url:
        yield url


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


# -- the Live page, with a running proxy ---------------------------------------------------------
@pytest.fixture()
def live_proxy(tmp_path: Path) -> Iterator[Proc]:
    """``kvern proxy`` in front of the proxy tests' fake upstream, both stopped at the end."""
    started: list[Proc] = []
    try:
        port = _free_port()
        with open(tmp_path / "upstream.log", "wb") as sink:
            up = subprocess.Popen([sys.executable, str(PROXY_TESTS / "fake_upstream.py"), str(port)],
                                  stdout=sink, stderr=subprocess.STDOUT, env=proxy_env())
        started.append(Proc(f"http://127.0.0.1:{port}", port, up, tmp_path / "upstream.log", tmp_path))
        wait_http(started[0].url + "/v1/models", up, started[0].log)
        port = _free_port()
        with open(tmp_path / "proxy.log", "wb") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "kvern", "proxy", "--upstream", started[0].url,
                                     "--port", str(port), "--log-dir", str(tmp_path / "logs"),
                                     "--profile", "llamacpp"],
                                    stdout=sink, stderr=subprocess.STDOUT, env=proxy_env(), cwd=tmp_path)
        started.append(Proc(f"http://127.0.0.1:{port}", port, proc, tmp_path / "proxy.log",
                            tmp_path / "logs"))
        wait_http(started[1].url + "/health", proc, started[1].log)
        yield started[1]
    finally:
        for p in reversed(started):
            p.stop(signal.SIGKILL)


def _send(proxy: Proc, n: int) -> None:
    with httpx.Client(timeout=10) as c:
        for i in range(n):
            r = c.post(proxy.url + "/v1/chat/completions", json=chat(stream=i % 2 == 1))
            assert r.status_code == 200


def _metric(page: Any, label: str) -> Any:
    """The value of the ``st.metric`` labelled ``label`` (exactly)."""
    box = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(f"^{re.escape(label)}$")))
    return box.get_by_test_id("stMetricValue")


def test_live_page_moves_with_traffic(page: Any, live_proxy: Proc, tmp_path: Path) -> None:
    """A person watching the Live page while requests go through a running proxy."""
    pytest.importorskip("streamlit", reason="no dashboard extra: pip install 'kvern[dashboard]'")
    from playwright.sync_api import expect

    _send(live_proxy, 3)
    live_proxy.wait_analyzed(3)
    with _serving("--store", str(live_proxy.folder / "analytics.sqlite"), cwd=tmp_path) as url:
        page.goto(url)  # --store without report folders: the app opens on Live
        expect(page.get_by_role("heading", name="Live")).to_be_visible()
        expect(_metric(page, "requests")).to_have_text("3")
        expect(_metric(page, "failed")).to_have_text("0")
        expect(_metric(page, "server-reported token hit rate")).to_have_text("30.00%")  # the fake: 3 of 10
        expect(page.locator(".vega-embed canvas, .vega-embed svg").first).to_be_visible()
        _send(live_proxy, 4)
        live_proxy.wait_analyzed(7)
        expect(_metric(page, "requests")).to_have_text("7", timeout=15_000)  # no click: the page refreshes
        expect(_metric(page, "analyzed")).to_have_text("7")
        page.set_viewport_size({"width": 1200, "height": 1700})  # the whole page in the picture
        page.wait_for_timeout(500)  # let the charts finish their transition before the picture
        page.screenshot(path=str(tmp_path / "dashboard-live.png"))
    assert live_proxy.stop() == 0
