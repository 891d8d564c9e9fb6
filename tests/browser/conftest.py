"""Browser tests: Debian's Chromium driven by Playwright, against a real giftwire server.

These tests never skip: without /usr/bin/chromium they fail and say how to install it
(`make test` installs it when it runs as root).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from server.config import Config
from tests.browser.support import watched_server
from tests.support.servers import RunningServer

CHROMIUM = os.environ.get("GIFTWIRE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # Background tabs would throttle timers; the overlay is always "visible" in OBS.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
]


@pytest.fixture
def config(config: Config) -> Config:
    """The suite's isolated config, with room for the test viewers' gift rate (they send as fast
    as acks come back) and a short drain hint (reconnect after going_away)."""
    return dataclasses.replace(
        config, rate_per_s=1e6, rate_burst=1_000_000, reconnect_hint_ms=200
    )


@pytest.fixture
async def server(config: Config, redis: object, pool: object) -> AsyncIterator[RunningServer]:
    """The suite's in-process server, watched (see watched_server)."""
    async with watched_server(config) as running:
        yield running


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is missing ({CHROMIUM}): install Debian's package with "
            "`sudo apt-get update && sudo apt-get install -y chromium` (`make test` does this "
            "when run as root), or point GIFTWIRE_CHROMIUM at a Chromium binary.",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    # Playwright's wait_for_function evaluates its predicate in the page, which the page's own
    # Content-Security-Policy forbids; test_overlay_csp.py runs the page with its CSP enforced.
    ctx = await browser.new_context(viewport={"width": 1280, "height": 720}, bypass_csp=True)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A page whose uncaught script errors fail the test."""
    p = await context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    # Failed loads and refused WebSockets are logged as console errors too, and the reconnect
    # tests cause those on purpose; script errors and CSP violations are what must not happen.
    p.on(
        "console",
        lambda msg: errors.append(msg.text)
        if msg.type == "error" and ("Content Security Policy" in msg.text
                                    or "Uncaught" in msg.text)
        else None,
    )
    yield p
    assert not errors, f"the page logged errors: {errors}"


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
