"""The demo shows you (issue 14): after three minutes of the bots, your own single Rose reaches the
overlay within 5 s and the demo page shows it confirmed.

Three real minutes would eat the CI budget, so the claim is shown in two halves.

1. Three minutes of bots, compressed: the demo runs at a bot pace of P = 1 s instead of the
   default 8 s (`GIFTWIRE_DEMO_BOT_PACE_S`). Everything that decides whether the overlay's queue
   backs up scales with P (server/web/demo.py, PACE_JITTER): the spacing of the bots' turns,
   their combo clicks, and the overlay link's alert duration and gap (the overlay has no timer
   of its own besides those). So the queue goes through the same states as in real time, 8
   times faster, and "three minutes of bots" is the number of bot alerts three minutes hold at
   8 s: 180 / 8, rounded up. What is checked is the state, not a duration, because a duration
   does not scale back: 5 s at P = 1 s would be 40 s at the real pace. The overlay's `maxQueued`
   stays 1 through the three minutes and your Rose: every alert, yours included, found the queue
   empty and waited at most for the one alert on screen and the gap, at most 0.575 P (4.6 s at
   8 s). Nothing was merged or dropped, and the goal (sized for an hour of the bots) is not
   overshot.
2. The same demo at the real pace: your Rose, sent while a bot's alert is on screen (the wait
   the first half bounds), is on the overlay as an alert and on the demo page as confirmed,
   both within 5 real seconds of the click.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect
from redis.asyncio import Redis

from server.config import Config
from tests.browser.support import wait_page, watched_server
from tests.support.servers import RunningServer

pytestmark = pytest.mark.browser

DEFAULT_PACE_S = Config().demo_bot_pace_s
COMPRESSED_PACE_S = 1.0
THREE_MINUTES_OF_BOTS = math.ceil(180 / DEFAULT_PACE_S)
VISIBLE_WITHIN_MS = 5_000  # the bound, in real time
HOOK = "window.giftwireOverlay"


def demo_config(config: Config, pace_s: float) -> Config:
    return dataclasses.replace(config, demo=True, demo_bots=3, demo_bot_pace_s=pace_s)


@pytest.fixture
async def compressed_demo(config: Config, redis: Redis, pool: asyncpg.Pool
                          ) -> AsyncIterator[RunningServer]:
    async with watched_server(demo_config(config, COMPRESSED_PACE_S)) as running:
        yield running


@pytest.fixture
async def real_pace_demo(config: Config, redis: Redis, pool: asyncpg.Pool
                         ) -> AsyncIterator[RunningServer]:
    async with watched_server(demo_config(config, DEFAULT_PACE_S)) as running:
        yield running


async def open_demo(server: RunningServer, overlay: Page, context: BrowserContext
                    ) -> tuple[Page, str]:
    """The overlay at the link the demo gives (its alert timing is part of the pacing), and the
    demo page as a newcomer opens it; returns the demo page and the guest's user id."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        session = (await http.get("/demo/api/session")).json()
    await overlay.goto(session["overlay_url"])
    await wait_page(overlay, f"{HOOK}.state === 'joined'")
    demo = await context.new_page()
    await demo.goto(f"{server.base_url}/")  # `/` leads to the demo in demo mode
    await expect(demo.locator("body")).to_have_attribute("data-state", "joined")
    you = await demo.locator("#you").get_attribute("data-user")
    assert you and you.startswith("guest-")
    return demo, you


async def send_one_rose(demo: Page) -> None:
    await demo.locator('.gift[data-gift="rose"]').click()  # one click: a single Rose


async def test_after_three_minutes_of_bots_the_queue_is_empty_for_your_rose(
    compressed_demo: RunningServer, page: Page, context: BrowserContext, artifacts: Path
) -> None:
    overlay = page
    demo, you = await open_demo(compressed_demo, overlay, context)
    await wait_page(overlay, f"{HOOK}.shownTotal + {HOOK}.queued >= {THREE_MINUTES_OF_BOTS}",
                    timeout_ms=180_000)
    assert await overlay.evaluate(f"[{HOOK}.maxQueued, {HOOK}.merged, {HOOK}.dropped]"
                                  ) == [1, 0, 0]
    assert not await overlay.evaluate(f"{HOOK}.shown.some((a) => a.sender === '{you}')")
    goal = await overlay.evaluate(f"{HOOK}.goal")
    assert 0 < goal["progress"] < goal["target"], goal

    await send_one_rose(demo)
    await wait_page(overlay, f"{HOOK}.shown.some((a) => a.sender === '{you}')")
    mine = await overlay.evaluate(
        f"{HOOK}.shown.filter((a) => a.sender === '{you}').map((a) => [a.gift, a.count])")
    assert mine == [["rose", 1]]
    # Your Rose found the queue empty too: behind at most the alert on screen.
    assert await overlay.evaluate(f"[{HOOK}.maxQueued, {HOOK}.merged, {HOOK}.dropped]"
                                  ) == [1, 0, 0]
    entry = demo.locator("#mine li").first
    await expect(entry).to_have_attribute("data-state", "confirmed")
    await expect(entry).to_contain_text("Rose x 1")
    await demo.screenshot(path=artifacts / "demo-you.png")


async def test_at_the_real_pace_your_rose_shows_within_5_s_behind_a_bots_alert(
    real_pace_demo: RunningServer, page: Page, context: BrowserContext
) -> None:
    overlay = page
    demo, you = await open_demo(real_pace_demo, overlay, context)
    # A bot's alert on screen: the longest your gift can wait with the queue empty.
    await wait_page(overlay, f"{HOOK}.current !== null && {HOOK}.current.sender !== '{you}'")
    await send_one_rose(demo)
    entry = demo.locator("#mine li").first
    # Both clocks start at the click.
    await asyncio.gather(
        wait_page(overlay, f"{HOOK}.shown.some((a) => a.sender === '{you}')",
                  timeout_ms=VISIBLE_WITHIN_MS),
        expect(entry).to_have_attribute("data-state", "confirmed", timeout=VISIBLE_WITHIN_MS),
    )
    mine = await overlay.evaluate(
        f"{HOOK}.shown.filter((a) => a.sender === '{you}').map((a) => [a.gift, a.count])")
    assert mine == [["rose", 1]]
    await expect(entry).to_contain_text("Rose x 1")
    # The ticker lists it as well (the issue accepts either; the alert is the stronger).
    assert await overlay.evaluate(
        f"{HOOK}.shown.find((a) => a.sender === '{you}').eids"
        f".every((eid) => {HOOK}.ticker.some((t) => t.eid === eid))")
