"""Real headless Chromium (Debian's) against the console served by uvicorn on 127.0.0.1.

A coordinator signs in, filters the alert log, opens the critical alert,
acknowledges it, sees it move to acknowledged, and opens the patient to find the
chart with its stop lines; a clinician records a dose through the form. Each page
is kept as a screenshot in test-artifacts/.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn

from tests.helpers import ROOT
from tests.web.conftest import PASSWORD, Console

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium; installed by scripts/ensure-chromium when it is missing."""
    note = ""
    if not CHROMIUM.exists():
        done = subprocess.run(
            [str(ROOT / "scripts" / "ensure-chromium")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        note = (done.stdout + done.stderr).strip()
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not available after scripts/ensure-chromium: {note}")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live(console: Console) -> Iterator[str]:
    """The console on 127.0.0.1:<free port>, served by uvicorn in a thread."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            console.app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def test_coordinator_works_an_alert_and_reads_the_chart(
    chromium: Path, live: str, console: Console
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{live}/alerts")
            expect(page).to_have_url(f"{live}/login?next=%2Falerts")
            _shot(page, "01-login")
            page.fill("input[name=username]", "cora")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{live}/alerts")
            expect(page.locator("tr.alert-row")).to_have_count(5)
            _shot(page, "02-alert-log")

            page.select_option("select[name=severity]", "critical")
            page.select_option("select[name=state]", "open")
            page.click("form.filters button[type=submit]")
            rows = page.locator("tr.alert-row")
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text("stop.transaminase")
            code = rows.first.get_attribute("data-code")
            assert code
            _shot(page, "03-alert-log-filtered")

            rows.first.locator("a.code").click()
            expect(page).to_have_url(f"{live}/alerts/{code}")
            expect(page.locator("#alert-state")).to_have_text("open")
            expect(page.locator("table.thresholds")).to_contain_text("110")
            expect(page.locator("table.deliveries")).to_contain_text("console-")
            _shot(page, "04-alert")

            page.click("#acknowledge")
            expect(page.locator("#alert-state")).to_have_text("acknowledged")
            expect(page.locator(".flash-ok")).to_contain_text(f"Acknowledged {code}")
            _shot(page, "05-alert-acknowledged")

            page.goto(f"{live}/alerts")
            page.click("a.count[data-state=acknowledged]")
            ack_rows = page.locator("tr.alert-row")
            expect(ack_rows).to_have_count(1)
            expect(ack_rows.first).to_have_attribute("data-code", code)
            expect(page.locator("a.count[data-state=open] strong")).to_have_text("4")
            _shot(page, "06-alert-log-acknowledged")

            ack_rows.first.locator("td >> nth=2").locator("a").click()
            expect(page).to_have_url(f"{live}/patients/P-100")
            chart = page.locator("figure.chart svg.lft-chart-wide")
            expect(chart).to_be_visible()
            assert page.locator("svg.lft-chart-wide .stop-line").count() >= 3
            assert page.locator("svg.lft-chart-wide .series-alt .point").count() == 2
            assert page.locator("svg.lft-chart-wide .dose-step").count() >= 2
            expect(page.locator("form#form-dose")).to_have_count(0)  # coordinator
            _shot(page, "07-patient")

            page.goto(f"{live}/patients")
            # P-100's critical alert is acknowledged now: the overdue patient leads.
            expect(page.locator("tr.patient-row").first).to_have_class("patient-row need-overdue")
            _shot(page, "08-patients")
            page.goto(f"{live}/health")
            expect(page.locator("main")).to_contain_text("Outbox depth")
            _shot(page, "09-health")
            page.goto(f"{live}/quarantine")
            _shot(page, "10-quarantine")
        finally:
            browser.close()


def test_clinician_records_a_dose_in_the_browser(
    chromium: Path, live: str, console: Console
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{live}/login?next=/patients/P-300")
            page.fill("input[name=username]", "clint")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{live}/patients/P-300")
            page.fill("#form-dose input[name=dose_mg]", "100")
            page.fill("#form-dose input[name=note]", "step up after normal LFTs")
            page.click("#form-dose button[type=submit]")
            expect(page.locator(".flash-ok")).to_contain_text("Recorded dose event")
            expect(page.locator("tr.event.kind-dose").first).to_contain_text("100 mg/day")
            expect(page.locator("tr.event.kind-dose").first).to_contain_text("by clint")
            _shot(page, "11-patient-dose-recorded")
        finally:
            browser.close()


def test_artifacts_dir_is_ignored_by_git() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "check-ignore", "-q", "test-artifacts/console-01-login.png"],
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0
