"""The overlay's battle bar in Chromium: both rooms' overlays show the live scores of a real
battle (this room on the left), then the winner and each side's top gifter."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page

from server.auth import TokenIssuer
from tests.battles.support import (
    CREATOR_A,
    CREATOR_B,
    ROOM_A,
    ROOM_B,
    start_battle,
    two_rooms,
    until_redis_time,
)
from tests.browser.support import fund, open_overlay, viewer, wait_page
from tests.support.servers import RunningServer

pytestmark = pytest.mark.browser


async def test_the_overlay_shows_the_battle_bar_and_the_winner(
    server: RunningServer, page: Page, issuer: TokenIssuer, artifacts: Path
) -> None:
    rt = server.runtime
    await two_rooms(rt)
    await fund(rt, "ann", 1000)
    await fund(rt, "bo", 1000)
    other = await page.context.new_page()
    await open_overlay(page, server.base_url, issuer.mint(CREATOR_A, "overlay", room=ROOM_A))
    await open_overlay(other, server.base_url, issuer.mint(CREATOR_B, "overlay", room=ROOM_B))
    assert not await page.locator("#gw-battle").is_visible()

    async with httpx.AsyncClient(base_url=server.base_url) as http:
        started = await start_battle(http, issuer, duration_s=3)
    await page.locator("#gw-battle").wait_for()
    await wait_page(page, "window.giftwireOverlay.battle?.phase === 'start'")

    async with viewer(server.ws_url, issuer.mint("ann", "viewer", name="Ann"), "red") as v:
        await v.gift("doughnut")  # 30
        await v.gift("finger_heart")  # 5
    async with viewer(server.ws_url, issuer.mint("bo", "viewer", name="Bo"), "blue") as v:
        await v.gift("finger_heart")  # 5
    # Live scores on both overlays, each with its own room on the left.
    await wait_page(page, "document.querySelector('.gw-battle-left .gw-battle-score')"
                          ".textContent === '35'")
    await wait_page(page, "document.querySelector('.gw-battle-right .gw-battle-score')"
                          ".textContent === '5'")
    await wait_page(other, "document.querySelector('.gw-battle-left .gw-battle-score')"
                           ".textContent === '5'")
    fill = await page.locator(".gw-battle-fill").evaluate("e => e.style.width")
    assert float(fill.rstrip("%")) == pytest.approx(35 / 40 * 100)
    await page.screenshot(path=artifacts / "overlay-battle.png")

    await until_redis_time(rt, started["ends_at"])
    for p in (page, other):
        await wait_page(p, "window.giftwireOverlay.battle?.phase === 'end'")
        assert await p.locator(".gw-battle-result").inner_text() == f"{CREATOR_A} wins!"
        assert await p.locator(".gw-battle-tops").inner_text() == (
            "Top gifters: Ann (red) · Bo (blue)" if p is page
            else "Top gifters: Bo (blue) · Ann (red)")
    state = await page.evaluate("window.giftwireOverlay.battle")
    assert state["result"] == "win" and state["winner"] == "red"
    assert [(s["room"], s["score"]) for s in state["sides"]] == [("red", 35), ("blue", 5)]
    await page.screenshot(path=artifacts / "overlay-battle-result.png")


async def test_an_overlay_past_the_end_asks_the_server_and_settles_the_battle(
    server: RunningServer, page: Page, issuer: TokenIssuer
) -> None:
    """No process settles it (the sweep is off, nobody gifts or joins): the overlay's own
    question after the end is the touch that ends it, and it shows the result."""
    rt = server.runtime
    await rt.components["battle_settler"].stop_sweep()
    await two_rooms(rt)
    await open_overlay(page, server.base_url, issuer.mint(CREATOR_B, "overlay", room=ROOM_B))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        started = await start_battle(http, issuer, duration_s=1)
    bid = started["id"]
    await wait_page(page, "window.giftwireOverlay.battle?.phase === 'start'")
    await until_redis_time(rt, started["ends_at"] + 1000)
    row = await rt.pool.fetchrow("SELECT state FROM battles WHERE id = $1", bid)
    assert row["state"] == "running"  # due, but nobody touched it
    await wait_page(page, "window.giftwireOverlay.battle?.phase === 'end'")
    assert await page.locator(".gw-battle-result").inner_text() == "Draw"
    row = await rt.pool.fetchrow("SELECT state, result FROM battles WHERE id = $1", bid)
    assert dict(row) == {"state": "ended", "result": "draw"}
