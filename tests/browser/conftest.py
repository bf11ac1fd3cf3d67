"""Browser tests: the real app on a local port, driven by the system Chromium via Playwright.

No browser is downloaded: Playwright launches /usr/bin/chromium (Debian's package).
Screenshots land in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from app.services.demo import DEMO_PASSWORD

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def live_server(app):
    """Serve ``app`` on 127.0.0.1:<free port> in a thread for the length of the test."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    thread.join(5)


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}, locale="zh-CN"
    )
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    errors: list[str] = []

    def on_console(msg):
        if msg.type != "error":
            return
        if msg.text.startswith("htmx:sendAbort"):
            # A poll in flight when the test navigated away: the browser aborts it and
            # htmx logs that (afterRequest, then sendAbort). Not an error of the page's.
            if errors and errors[-1].startswith("htmx:afterRequest"):
                errors.pop()
            return
        errors.append(msg.text)

    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", on_console)
    pg.js_errors = errors
    yield pg
    context.close()


@pytest.fixture
def login(page):
    """Log in through the real page; returns the page on the dashboard."""

    def _login(username: str, password: str = DEMO_PASSWORD, target=page):
        target.goto("/login")
        target.fill("input[name=username]", username)
        target.fill("input[name=password]", password)
        target.click("button[type=submit].primary")
        target.wait_for_url("**/dashboard")
        return target

    return _login


@pytest.fixture
def new_page(browser, live_server):
    """A second, independent browser session (another person), e.g. the approver."""
    contexts = []

    def _new():
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": 1280, "height": 900}, locale="zh-CN"
        )
        contexts.append(context)
        pg = context.new_page()
        pg.set_default_timeout(10_000)
        return pg

    yield _new
    for c in contexts:
        c.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    # caret="initial": Playwright's default caret hiding leaves style="" on every input, which
    # htmx later copies while settling a swap, a CSP violation that shows up in js_errors.
    page.screenshot(path=str(path), full_page=True, caret="initial")
    return path
