"""Network blips and server drains: the overlay reconnects, resumes, and shows every alert once.

The page reaches the server through a TCP proxy the test can cut (an abrupt RST, as when a
network drops), hold shut (the server unreachable for a while), or point at another server (a
load balancer during a rolling deploy). Gifts keep flowing meanwhile from a viewer connected
directly. The page must end up with exactly the room's gift events, each once, in room order.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest
from playwright.async_api import Page
from redis.asyncio import Redis

from server.auth import TokenIssuer
from server.config import Config
from tests.browser.support import (
    CuttableProxy,
    Viewer,
    fund,
    live_room,
    open_overlay,
    record_alerts,
    shown,
    viewer,
    wait_page,
    watched_server,
)
from tests.support.servers import RunningServer

pytestmark = pytest.mark.browser

ROOM = "blip"
GIFTS = ("rose", "finger_heart", "doughnut", "ice_cream", "hand_hearts")


async def send(v: Viewer, n: int, start: int = 0, *, cut_after: int = -1,
               proxy: CuttableProxy | None = None) -> None:
    for i in range(start, start + n):
        await v.gift(GIFTS[i % len(GIFTS)], 1 + i % 3)
        if i - start == cut_after and proxy is not None:
            proxy.cut()


async def assert_each_event_shown_once(page: Page, v: Viewer, total: int) -> None:
    events = await v.wait_gifts(total)
    assert len(events) == total
    await wait_page(page, f"window.giftwireOverlay.shownTotal >= {total}")
    alerts = await shown(page)
    # Exactly the room's events, each once, in room order (fifo), nothing extra.
    assert [a["eids"] for a in alerts] == [[e.eid] for e in events]
    dom = await page.evaluate("window.domAlerts.map((d) => d.eids)")
    assert dom == [e.eid for e in events]


async def test_a_network_blip_loses_no_alert_and_shows_none_twice(
    server: RunningServer, page: Page, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await live_room(rt, ROOM)
    await fund(rt, "dee", 100_000)
    overlay = issuer.mint("creator1", "overlay", room=ROOM)
    async with (
        CuttableProxy(server.config.port) as proxy,
        viewer(server.ws_url, issuer.mint("dee", "viewer", name="Dee"), ROOM) as dee,
    ):
        await open_overlay(page, proxy.base_url, overlay,
                           "order=fifo&duration=15&gap=0&max=500&backoff=50")
        await record_alerts(page)
        await send(dee, 20)
        await wait_page(page, "window.giftwireOverlay.stats.received === 20")

        # Blip 1: the connection dies between two gifts while more keep coming; the page
        # reconnects at once and resumes after the last seq it saw.
        await send(dee, 30, 20, cut_after=4, proxy=proxy)
        await wait_page(page, "window.giftwireOverlay.stats.joins === 2")

        # Blip 2: the server is unreachable for a while, and gifts are sent meanwhile.
        proxy.blocked = True
        proxy.cut()
        await wait_page(page, "window.giftwireOverlay.state !== 'joined'")
        await send(dee, 15, 50)
        proxy.blocked = False

        await assert_each_event_shown_once(page, dee, 65)
        stats = await page.evaluate("window.giftwireOverlay.stats")
        assert stats["connects"] >= 3 and stats["joins"] >= 3
        assert stats["gaps"] == 0 and stats["received"] == 65
        assert proxy.accepted >= 3


@pytest.fixture
async def two_servers(
    config: Config, redis: Redis, pool: asyncpg.Pool
) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    """Two server processes' worth of app (in this process) sharing one Redis and Postgres."""
    async with watched_server(config) as a, watched_server(config) as b:
        yield a, b


async def test_a_draining_server_sends_the_overlay_to_another_without_loss(
    two_servers: tuple[RunningServer, RunningServer], page: Page, issuer: TokenIssuer
) -> None:
    a, b = two_servers
    await live_room(a.runtime, ROOM)
    await fund(a.runtime, "eve", 100_000)
    overlay = issuer.mint("creator1", "overlay", room=ROOM)
    async with (
        CuttableProxy(a.config.port) as balancer,
        viewer(b.ws_url, issuer.mint("eve", "viewer", name="Eve"), ROOM) as eve,
    ):
        await open_overlay(page, balancer.base_url, overlay,
                           "order=fifo&duration=15&gap=0&max=500")
        await record_alerts(page)
        await send(eve, 10)
        await wait_page(page, "window.giftwireOverlay.stats.received === 10")

        # Deploy: the balancer sends new connections to b, then a drains (going_away, 1001).
        balancer.upstream_port = b.config.port
        drained = asyncio.create_task(a.runtime.components["drain"]())
        await wait_page(page, "window.giftwireOverlay.state !== 'joined'")
        await send(eve, 10, 10)
        await drained

        await assert_each_event_shown_once(page, eve, 20)
        stats = await page.evaluate("window.giftwireOverlay.stats")
        assert stats["connects"] == 2 and stats["gaps"] == 0


@pytest.fixture
async def short_history_server(
    config: Config, redis: Redis, pool: asyncpg.Pool
) -> AsyncIterator[RunningServer]:
    async with watched_server(dataclasses.replace(config, history_maxlen=10)) as running:
        yield running


async def test_an_outage_longer_than_the_history_shows_the_fresh_snapshot(
    short_history_server: RunningServer, page: Page, issuer: TokenIssuer
) -> None:
    server = short_history_server
    rt = server.runtime
    await live_room(rt, ROOM, goal=("Drums", 1000))
    await fund(rt, "gus", 100_000)
    overlay = issuer.mint("creator1", "overlay", room=ROOM)
    async with viewer(server.ws_url, issuer.mint("gus", "viewer", name="Gus"), ROOM) as gus:
        await open_overlay(page, server.base_url, overlay, "order=fifo&duration=15&gap=0")
        await send(gus, 3)
        await wait_page(page, "window.giftwireOverlay.shownTotal === 3")
        # Away for longer than the room keeps history (10 events): those alerts are gone.
        await page.evaluate("window.giftwireOverlay.hold()")
        await send(gus, 25, 3)
        await page.evaluate("window.giftwireOverlay.release()")
        await wait_page(page, "window.giftwireOverlay.stats.gaps === 1"
                              " && window.giftwireOverlay.state === 'joined'")
        # The snapshot is current (goal and top), and new gifts show again.
        events = await gus.wait_gifts(28)
        coins = sum(e.coins for e in events)
        await wait_page(page, f"window.giftwireOverlay.goal.progress === {coins}")
        assert await page.evaluate("window.giftwireOverlay.top[0].coins") == coins
        await send(gus, 2, 28)
        newest = [e.eid for e in (await gus.wait_gifts(30))[-2:]]
        await wait_page(page, "window.giftwireOverlay.shownTotal === 5")
    alerts = await shown(page)
    assert [a["eids"][0] for a in alerts] == [e.eid for e in events[:3]] + newest


async def test_closed_as_too_slow_the_overlay_comes_back_at_once_and_resumes(
    server: RunningServer, page: Page, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await live_room(rt, ROOM)
    await fund(rt, "hal", 100_000)
    overlay = issuer.mint("creator1", "overlay", room=ROOM)
    async with viewer(server.ws_url, issuer.mint("hal", "viewer", name="Hal"), ROOM) as hal:
        # A long backoff: only the "reconnect at once" rule of 4008 brings it back quickly.
        await open_overlay(page, server.base_url, overlay,
                           "order=fifo&duration=15&gap=0&max=500&backoff=60000")
        await record_alerts(page)
        await send(hal, 8)
        await wait_page(page, "window.giftwireOverlay.stats.received === 8")
        # What the server does to a client whose buffer overflowed (server/edge/connection.py).
        (conn,) = [c for c in rt.components["realtime"].connections
                   if c.principal is not None and c.principal.role.value == "overlay"]
        conn.kill(4008, "too slow: reconnect and resume")
        await send(hal, 8, 8)
        await assert_each_event_shown_once(page, hal, 16)
        stats = await page.evaluate("window.giftwireOverlay.stats")
        assert stats["connects"] == 2 and stats["lastDelay"] == 0


async def test_an_overlay_set_up_before_the_stream_waits_for_it_to_go_live(
    server: RunningServer, page: Page, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    overlay = issuer.mint("creator1", "overlay", room="later")
    await page.goto(f"{server.base_url}/overlay?token={overlay}&backoff=50&duration=15&gap=0")
    # The room does not exist yet: the page keeps trying, gently, instead of giving up.
    await wait_page(page, "window.giftwireOverlay.errors.includes('room_not_found')"
                          " && window.giftwireOverlay.state === 'reconnecting'")
    await live_room(rt, "later")
    await wait_page(page, "window.giftwireOverlay.state === 'joined'")
    await fund(rt, "ivy", 100)
    async with viewer(server.ws_url, issuer.mint("ivy", "viewer", name="Ivy"), "later") as ivy:
        await ivy.gift("rose")
    await wait_page(page, "window.giftwireOverlay.shownTotal === 1")


async def test_a_revoked_token_stops_the_overlay_with_a_visible_reason(
    server: RunningServer, page: Page, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await live_room(rt, ROOM)
    overlay = issuer.mint("creator1", "overlay", room=ROOM)
    async with CuttableProxy(server.config.port) as proxy:
        await open_overlay(page, proxy.base_url, overlay, "backoff=50")
        await issuer.revoke(overlay, rt.redis)
        proxy.cut()
        # The reconnect's hello is refused (4004): the page stops and says why, no retry loop.
        await wait_page(page, "window.giftwireOverlay.state === 'failed'")
        assert await page.evaluate("window.giftwireOverlay.detail") == "token_expired"
        assert "token_revoked" in await page.evaluate("window.giftwireOverlay.errors")
        status = page.locator("#gw-status")
        assert await status.is_visible()
        assert "cannot connect" in await status.inner_text()
