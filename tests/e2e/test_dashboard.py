"""The dashboard in a real browser on the whole stack: `newsstream up --replay DIR`, then headless
Chromium (Debian's, through Playwright) opens /dashboard, waits for live data in the charts and
the rows in the index, searches from the box and saves a screenshot to
``test-artifacts/dashboard.png``; then /docs (Swagger UI) and /redoc render the operations with
no request leaving the machine.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from probes import wait_until
from up_process import start_up, wait_for_api

# The whole stack, a replay and a browser: about 3 minutes on 2 busy cores, over the default 300 s
# limit when the machine is loaded.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _int_text(text: str | None) -> int:
    digits = re.sub(r"[^0-9]", "", text or "")
    return int(digits) if digits else 0


def test_dashboard_shows_live_data_and_searches(
    news_feeds_dir: Path, tmp_path: Path, model_cache_dir: Path
) -> None:
    pytest.importorskip("playwright.sync_api", reason="PyPI playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    up, log_path = start_up(news_feeds_dir, tmp_path, model_cache_dir)
    try:
        api = wait_for_api(log_path)
        _check_in_browser(api, tmp_path)
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(15)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(5)


def _check_in_browser(api: str, tmp_path: Path) -> None:
    from playwright.sync_api import Page, sync_playwright

    errors: list[str] = []
    foreign: list[Any] = []  # requests the pages made to any host but the API's
    reached: list[str] = []  # foreign requests that got an answer: they left the machine
    origin = urlsplit(api).netloc
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1500},
        )
        context.on("request", lambda r: _note_foreign(r, origin, foreign))
        context.on("response", lambda r: _note_foreign(r.request, origin, reached))
        context.on("requestfinished", lambda r: _note_foreign(r, origin, reached))
        try:
            page: Page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: errors.append(msg.text) if msg.type == "error" else None,
            )
            page.goto(f"{api}/dashboard", wait_until="domcontentloaded")

            def live() -> bool:
                indexed = _int_text(page.get_by_test_id("indexed-total").text_content())
                line = page.locator('[data-testid="ingest-line"]').count()
                return indexed > 0 and line > 0

            wait_until(live, 240, "indexed-total > 0 and an ingest line in the chart", every_s=1)
            indexed = _int_text(page.get_by_test_id("indexed-total").text_content())
            assert page.locator("#outcomes-chart rect").count() >= 1
            assert page.locator("#lag-chart rect").count() >= 1, "no lag bars (partitions)"

            def sources() -> bool:
                return page.locator("#sources-chart rect").count() >= 1

            wait_until(sources, 60, "top sources bars", every_s=1)

            # Rows written and not yet flushed count: a fresh index never shows 0 rows.
            def rows_in_index() -> bool:
                return _int_text(page.get_by_test_id("index-rows").text_content()) > 0

            wait_until(rows_in_index, 60, "rows in index > 0", every_s=1)

            page.get_by_test_id("search-input").fill("election results")
            page.get_by_test_id("search-button").click()
            page.locator('[data-testid="search-result"]').first.wait_for(timeout=60_000)
            titles = page.locator('[data-testid="result-title"]').all_text_contents()
            assert titles and all(t.strip() for t in titles), titles
            hrefs = page.locator('a[data-testid="result-title"]').evaluate_all(
                "els => els.map(e => e.href)"
            )
            assert hrefs and all(h.startswith(("http://", "https://")) for h in hrefs)
            # A result opens its story's timeline in place: the result's own article at least.
            page.locator('[data-testid="story-toggle"]').first.click()
            page.locator('[data-testid="story-articles"] a').first.wait_for(timeout=30_000)
            assert page.locator('[data-testid="story-articles"] li').count() >= 1
            # the search shows up in the API's own latency figure on the next refresh
            wait_until(
                lambda: "n/a" not in (page.get_by_test_id("search-latency").text_content() or ""),
                20,
                "search latency p50/p95",
            )
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            print(f"indexed {indexed}; {len(titles)} results; screenshot in test-artifacts/")
            _check_docs(context.new_page(), api)
        finally:
            context.close()
    assert not errors, f"browser errors: {errors}"
    assert not reached, f"requests left the machine: {reached}"
    # ReDoc's bundle asks for a logo on its CDN; the docs' CSP refuses it inside the browser.
    assert all(r.failure == "csp" for r in foreign), [(r.url, r.failure) for r in foreign]


def _note_foreign(request: Any, origin: str, into: list[Any]) -> None:
    parts = urlsplit(request.url)
    if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != origin:
        into.append(request)


def _check_docs(page: Any, api: str) -> None:
    """/docs and /redoc render the API's operations from files this server ships."""
    page.goto(f"{api}/docs", wait_until="domcontentloaded")
    search_op = page.locator('.opblock-summary-path[data-path="/search"]').first
    search_op.wait_for(timeout=30_000)
    assert page.locator(".opblock").count() >= 8, "Swagger UI lists too few operations"
    page.goto(f"{api}/redoc", wait_until="domcontentloaded")
    page.get_by_text("Search the news index.").first.wait_for(timeout=30_000)
    assert page.get_by_text("Ingestion outcomes per worker and in total.").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "redoc.png"))
