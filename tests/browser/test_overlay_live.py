"""The overlay against a real server: gifts sent through the protocol show up on the page.

Viewers are real WebSocket clients using the protocol's codec; the overlay is the real page in
headless Chromium with an overlay token. Assertions are on the page's DOM (a MutationObserver
records every alert element) and on its test hook, never on timing.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.async_api import Page

from server.auth import TokenIssuer
from tests.browser.support import (
    fund,
    live_room,
    open_overlay,
    record_alerts,
    shown,
    viewer,
)
from tests.support.servers import RunningServer

pytestmark = pytest.mark.browser

ROOM = "live1"


async def test_gifts_show_one_alert_each_in_room_order(
    server: RunningServer, page: Page, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await live_room(rt, ROOM)
    await fund(rt, "ann", 100_000)
    overlay = issuer.mint("creator1", "overlay", room=ROOM)
    await open_overlay(page, server.base_url, overlay, "order=fifo&duration=30&gap=0")
    await record_alerts(page)

    sent = [("rose", 1), ("doughnut", 2), ("rose", 5), ("corgi", 1), ("finger_heart", 3),
            ("rose", 1), ("money_gun", 1), ("ice_cream", 7), ("hand_hearts", 1), ("rose", 2)]
    token = issuer.mint("ann", "viewer", name="Ann")
    async with viewer(server.ws_url, token, ROOM) as ann:
        for gift_id, count in sent:
            await ann.gift(gift_id, count)
        events = await ann.wait_gifts(len(sent))

    await page.wait_for_function(f"window.giftwireOverlay.shownTotal >= {len(sent)}")
    alerts = await shown(page)
    assert [a["eids"] for a in alerts] == [[e.eid] for e in events]
    assert [(a["gift"], a["count"]) for a in alerts] == sent
    assert all(a["name"] == "Ann" for a in alerts)
    # The DOM saw the same alerts, in the same order, with the sender and the count on screen.
    dom = await page.evaluate("window.domAlerts")
    assert [d["eids"] for d in dom] == [e.eid for e in events]
    for d, (gift_id, count) in zip(dom, sent, strict=True):
        assert d["gift"] == gift_id
        assert "Ann" in d["text"] and f"x {count}" in d["text"]


async def test_expensive_gifts_jump_the_queue(
    server: RunningServer, page: Page, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await live_room(rt, ROOM)
    await fund(rt, "bo", 200_000)
    overlay = issuer.mint("creator1", "overlay", room=ROOM)
    await open_overlay(page, server.base_url, overlay, "duration=30&gap=0")
    # Hold the queue, as while a long alert plays, so the order is the queue's choice.
    await page.evaluate("window.giftwireOverlay.pause()")
    sent = ["rose", "doughnut", "universe", "corgi", "rose"]
    async with viewer(server.ws_url, issuer.mint("bo", "viewer", name="Bo"), ROOM) as bo:
        for gift_id in sent:
            await bo.gift(gift_id)
        events = await bo.wait_gifts(len(sent))
    await page.wait_for_function(f"window.giftwireOverlay.queued === {len(sent)}")
    await page.evaluate("window.giftwireOverlay.resume()")
    await page.wait_for_function(f"window.giftwireOverlay.shownTotal === {len(sent)}")
    alerts = await shown(page)
    assert [a["gift"] for a in alerts] == ["universe", "corgi", "doughnut", "rose", "rose"]
    # Equal value keeps room order: the first rose first.
    roses = [e.eid for e in events if e.gift == "rose"]
    assert [a["eids"][0] for a in alerts if a["gift"] == "rose"] == roses


async def test_a_combo_shows_a_live_counter_then_one_settled_alert(
    server: RunningServer, page: Page, issuer: TokenIssuer, artifacts: Path
) -> None:
    rt = server.runtime
    await live_room(rt, ROOM)
    await fund(rt, "cy", 10_000)
    overlay = issuer.mint("creator1", "overlay", room=ROOM)
    await open_overlay(page, server.base_url, overlay, "duration=60000&bg=%23182030")
    await record_alerts(page)
    combo = f"c{uuid.uuid4().hex[:12]}"
    clicks = 12
    async with viewer(server.ws_url, issuer.mint("cy", "viewer", name="Cy"), ROOM) as cy:
        for _ in range(clicks):
            await cy.gift("rose", 1, combo)
        # The counter reaches the last click's count while the combo is still open.
        counter = page.locator(".gw-combo .gw-combo-count")
        await page.wait_for_function(
            f"document.querySelector('.gw-combo')?.dataset.count === '{clicks}'"
        )
        assert await counter.inner_text() == f"Rose x {clicks}"
        assert await page.evaluate("window.giftwireOverlay.shownTotal") == 0
        await page.screenshot(path=artifacts / "overlay-combo-counter.png")
        await cy.combo_end(combo)
        settled = await cy.wait_gifts(1)

    await page.wait_for_function("window.giftwireOverlay.shownTotal === 1")
    alerts = await shown(page)
    assert len(alerts) == 1
    assert (alerts[0]["gift"], alerts[0]["count"], alerts[0]["combo"]) == ("rose", clicks, combo)
    assert alerts[0]["eids"] == [settled[0].eid]
    assert await page.evaluate("window.giftwireOverlay.comboUpdates") >= 1
    # One alert on the page, with the settled total on it.
    dom = await page.evaluate("window.domAlerts")
    assert len(dom) == 1 and f"x {clicks}" in dom[0]["text"]
    await page.screenshot(path=artifacts / "overlay-combo-settled.png")
