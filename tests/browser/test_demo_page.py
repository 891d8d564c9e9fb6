"""The viewer demo page (demo mode) and both pages under their real Content-Security-Policy."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis

from server.auth import TokenIssuer
from server.config import Config
from tests.browser.support import fund, live_room, shown, viewer, wait_page, watched_server
from tests.support.servers import RunningServer

pytestmark = pytest.mark.browser


@pytest.fixture
async def demo_server(config: Config, redis: Redis, pool: asyncpg.Pool
                      ) -> AsyncIterator[RunningServer]:
    # No bots: this test is the only one gifting, so every number is its own.
    async with watched_server(dataclasses.replace(config, demo=True, demo_bots=0)) as running:
        yield running


@pytest.fixture
async def strict_page(browser: Browser) -> AsyncIterator[tuple[Page, list[str]]]:
    """A page that enforces the pages' CSP (the default fixture bypasses it for eval waits);
    waits go through locators, which run outside the page's script context."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 720})
    page = await ctx.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        yield page, problems
    finally:
        await ctx.close()


async def test_demo_page_buys_coins_sends_gifts_and_streaks_a_combo(
    demo_server: RunningServer, strict_page: tuple[Page, list[str]], context: BrowserContext,
    artifacts: Path,
) -> None:
    obs = context
    page, problems = strict_page
    rt = demo_server.runtime
    wallet = rt.components["wallet"]
    await page.goto(f"{demo_server.base_url}/demo")
    await expect(page.locator("body")).to_have_attribute("data-state", "joined")
    # The page's viewer is a guest of its own, never one of the demo's bot viewers.
    user = await page.locator("#you").get_attribute("data-user")
    assert user and user.startswith("guest-")
    assert user not in {v.user for v in rt.components["demo"].viewers}
    start = await wallet.balance(user)
    await expect(page.locator("#balance")).to_have_text(f"{start:,}")

    # The link opens this room's overlay (in OBS, say; here a page whose hook the test reads).
    href = await page.locator("#overlay-link").get_attribute("href")
    assert href and "/overlay?token=" in href
    overlay = await obs.new_page()
    await overlay.goto(href + "&duration=300&gap=0")
    await wait_page(overlay, "window.giftwireOverlay.state === 'joined'")

    await page.locator('.package[data-package="coins_70"]').click()
    await expect(page.locator("#balance")).to_have_text(f"{start + 70:,}")
    await page.locator('.gift[data-gift="corgi"]').click()
    await expect(page.locator("#balance")).to_have_text(f"{start + 70 - 299:,}")
    await wait_page(overlay, "window.giftwireOverlay.shown.some((a) => a.gift === 'corgi')")

    # Hold the rose: a click every 150 ms while the button is down, one combo.
    rose = page.locator('.gift[data-gift="rose"]')
    await rose.hover()
    await page.mouse.down()
    # Progress events may be coalesced, so the counter can jump: any count from 5 up.
    await expect(page.locator("#feed li.streaking")).to_contain_text(
        re.compile(r"Rose x ([5-9]|[1-9]\d+)…"))
    await page.screenshot(path=artifacts / "demo-streaking.png")
    await page.mouse.up()
    await expect(page.locator("#feed li").first).to_contain_text("sent Rose x ")
    settled = await page.locator("#feed li").first.inner_text()
    count = int(settled.split("sent Rose x ")[1].split(" ")[0])
    assert count >= 5
    # The settled combo is one alert on the overlay (after the corgi), and what the wallet
    # charged is exactly what the room saw.
    await wait_page(overlay, "window.giftwireOverlay.shownTotal === 2")
    alerts = await shown(overlay)
    assert [(a["gift"], a["count"], bool(a["combo"])) for a in alerts] == [
        ("corgi", 1, False), ("rose", count, True)]
    assert await wallet.balance(user) == start + 70 - 299 - count
    await expect(page.locator("#balance")).to_have_text(f"{start + 70 - 299 - count:,}")
    await page.screenshot(path=artifacts / "demo-page.png")
    assert not problems, problems


async def test_overlay_runs_under_its_own_csp(
    server: RunningServer, strict_page: tuple[Page, list[str]], issuer: TokenIssuer
) -> None:
    page, problems = strict_page
    rt = server.runtime
    await live_room(rt, "csp", goal=("Lights", 100))
    await fund(rt, "fay", 1000)
    await page.goto(f"{server.base_url}/overlay?token="
                    f"{issuer.mint('creator1', 'overlay', room='csp')}&duration=60000")
    await expect(page.locator("body")).to_have_attribute("data-state", "joined")
    async with viewer(server.ws_url, issuer.mint("fay", "viewer", name="Fay"), "csp") as fay:
        await fay.gift("doughnut", 2)
    await expect(page.locator("#gw-stage .gw-alert")).to_contain_text("Fay")
    await expect(page.locator("#gw-goal-numbers")).to_have_text("60 / 100")
    assert not problems, problems
