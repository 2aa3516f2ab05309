"""Every console page at a phone's width (390x844) in real headless Chromium: the page
never scrolls sideways and the navigation stays reachable behind its Menu toggle. The
triage desk refreshes itself without a reload. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import select

from monitor.services.alerts import acknowledge
from monitor.store.db import session_scope
from monitor.store.models import AlertRow
from tests.web.conftest import PASSWORD, Console
from tests.web.test_browser import ARTIFACTS, CHROMIUM_ARGS, chromium, live  # noqa: F401

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

PHONE = {"width": 390, "height": 844}


def _sign_in(browser: Browser, base: str, user: str) -> Page:
    page = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page.goto(f"{base}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    return page


def _fits(page: Page, name: str) -> None:
    """No sideways scroll of the page itself; a screenshot kept either way."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"phone-{name}.png"), full_page=True)
    scroll, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"{name}: page is {scroll}px wide at {inner}px"


def _pages(console: Console) -> list[tuple[str, str]]:
    with session_scope(console.engine) as s:
        code = s.exec(select(AlertRow.code).where(AlertRow.rule == "stop.transaminase")).one()
    return [
        ("triage", "/"),
        ("alerts", "/alerts"),
        ("alert", f"/alerts/{code}"),
        ("patients", "/patients"),
        ("patient", "/patients/P-100"),
        ("patient-quiet", "/patients/P-300"),
        ("quarantine", "/quarantine"),
        ("health", "/health"),
        ("account", "/account"),
        ("users", "/users"),
        ("audit", "/audit"),
    ]


def test_every_page_fits_a_phone_and_the_menu_opens(
    chromium: Path,  # noqa: F811
    live: str,  # noqa: F811
    console: Console,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            login = browser.new_page(viewport=PHONE)
            login.goto(f"{live}/login")
            _fits(login, "login")
            page = _sign_in(browser, live, "ada")
            for name, url in _pages(console):
                page.goto(f"{live}{url}")
                expect(page.locator("main h1")).to_be_visible()
                _fits(page, name)
            nav_link = page.locator("header nav a[href='/patients']")
            expect(nav_link).to_be_hidden()  # collapsed at this width
            page.click("label.nav-button")
            expect(nav_link).to_be_visible()
            _fits(page, "menu-open")
            nav_link.click()
            page.wait_for_url(f"{live}/patients")
            card = page.locator("tr.patient-row").first
            assert card.bounding_box() and card.bounding_box()["width"] <= PHONE["width"]  # type: ignore[index]
            _chart_reflows(page, f"{live}/patients/P-100")
        finally:
            browser.close()


def _chart_reflows(page: Page, url: str) -> None:
    """At phone width the chart is its narrow drawing, inside the screen, with date and
    axis text at least 9 px tall on the screen (the desktop one, shrunk, gives ~4 px)."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("svg.lft-chart-wide")).to_be_hidden()
    narrow = page.locator("svg.lft-chart-narrow")
    expect(narrow).to_be_visible()
    box = narrow.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    tick = narrow.locator("text.tick").first.bounding_box()
    assert tick is not None and tick["height"] >= 9, tick
    _fits(page, "patient-chart")


def test_triage_desk_refreshes_without_a_reload(
    chromium: Path,  # noqa: F811
    live: str,  # noqa: F811
    console: Console,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with session_scope(console.engine) as s:
        code = s.exec(select(AlertRow.code).where(AlertRow.rule == "stop.transaminase")).one()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = _sign_in(browser, live, "cora")
            page.goto(f"{live}/?every=2")
            row = page.locator(f"tr.desk-row[data-code='{code}']")
            expect(row).to_have_class("desk-row band-0 sev-critical state-open")
            page.evaluate("window.__same_document = true")
            with session_scope(console.engine) as s:
                acknowledge(s, code, "clint", console.clock.now(), via="test")
            expect(row).to_have_class(
                "desk-row band-3 sev-critical state-acknowledged", timeout=10_000
            )
            assert page.evaluate("window.__same_document === true")  # no full reload
            expect(page.locator("#refreshed")).to_contain_text("updated")
            _fits(page, "triage-refreshed")
        finally:
            browser.close()
