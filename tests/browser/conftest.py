"""Fixtures for the browser tests: a live branch (browser_live.py) and Debian's Chromium.

Playwright's own browser download cannot work here, so the tests use
/usr/bin/chromium (``./dev test`` installs it). Without it the tests fail; they
never skip.
"""

from __future__ import annotations

import os
import pytest

from browser_live import LiveBranch

CHROMIUM = "/usr/bin/chromium"
#: Flags that keep Chromium from reaching for Google's services on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


@pytest.fixture
def live_branch(tmp_path):
    branch = LiveBranch(tmp_path)
    yield branch
    branch.close()


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing; ./dev test installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_branch):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="fi-FI", accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    # A CSP violation or a script error shows up here; the page must have none. A
    # resource answered with an error status is logged too; the tests check statuses themselves.
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.console_errors = errors
    yield page
    context.close()
