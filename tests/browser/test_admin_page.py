"""The operator view in Chromium: a live room appears, and the ledger lag number follows the
ledger streams (entries appended with no flusher running, then drained by a reconcile); each
process's connections, events and deliveries per second, slow-client disconnects, rate-limited
and error counts follow what really happens to that process."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from server.auth import TokenIssuer
from server.config import Config
from tests.browser.support import fund, live_room, viewer
from tests.hub.support import open_client
from tests.support.servers import RunningServer, inprocess_server

pytestmark = pytest.mark.browser


@pytest.fixture
async def server(config: Config, redis: Redis, pool: asyncpg.Pool) -> AsyncIterator[RunningServer]:
    async with inprocess_server(dataclasses.replace(config, run_flusher=False)) as running:
        yield running


async def test_admin_page_shows_a_live_room_and_the_ledger_lag_changing(
    server: RunningServer, page: Page, issuer: TokenIssuer, artifacts: Path,
) -> None:
    rt = server.runtime
    await live_room(rt, "stage")
    await page.goto(f"{server.base_url}/admin?token={issuer.mint('ops', 'admin')}")
    async with viewer(server.ws_url, issuer.mint("ann", "viewer", name="Ann"), "stage"):
        room = page.locator('#gw-rooms tr[data-room="stage"]')
        await expect(room).to_contain_text("creator1")
        await expect(room.locator("td").nth(2)).to_have_text("1")  # Ann is watching
        await expect(page.locator("#gw-processes tbody tr")).to_have_count(1)
        await expect(page.locator("#gw-ledger-lag")).to_have_text("0")
        await fund(rt, "ann", 500)  # a ledger entry, with no flusher to take it
        await fund(rt, "bob", 500)
        await expect(page.locator("#gw-ledger-lag")).to_have_text("2")
        await page.screenshot(path=artifacts / "admin.png", full_page=True)  # docs/img/admin.png
        shard = rt.keys.shard_of("ann")
        await expect(page.locator(f'#gw-ledger tr[data-shard="{shard}"]')).to_have_class(
            "lagging")
        # The reconcile button drains the streams with a flusher of its own and agrees.
        await page.click("#gw-reconcile-run")
        await expect(page.locator("#gw-reconcile-status")).to_have_attribute(
            "data-status", "agree")
        await expect(page.locator("#gw-ledger-lag")).to_have_text("0")


# Columns of a row of the processes table (server/web/static/admin.html).
CONNECTIONS, EVENTS, DELIVERIES, SLOW, RATE_LIMITED, ERRORS = 2, 4, 5, 6, 7, 8


@pytest.fixture
async def strict(config: Config, redis: Redis, pool: asyncpg.Pool) -> AsyncIterator[RunningServer]:
    """A gift budget of one (a second gift is refused 429) and a 64 KiB write bound per
    connection (a client that stops reading is soon closed as too slow)."""
    cfg = dataclasses.replace(config, rate_per_s=0.001, rate_burst=1, writer_max_bytes=64 * 1024)
    async with inprocess_server(cfg) as running:
        yield running


async def test_admin_page_shows_each_process_connections_events_slow_disconnects_and_refusals(
    strict: RunningServer, page: Page, issuer: TokenIssuer,
) -> None:
    server, rt = strict, strict.runtime
    realtime = rt.components["realtime"]
    await live_room(rt, "stage")
    await fund(rt, "ann", 100)
    await page.goto(f"{server.base_url}/admin?token={issuer.mint('ops', 'admin')}")
    row = page.locator("#gw-processes tbody tr").locator("td")
    sent = 0

    async def publish(n: int) -> None:
        nonlocal sent
        await asyncio.gather(*(realtime.state.publish_gift(
            "stage", sender="s", name="s", tx=f"t{sent + i}", gift="rose", count=1, coins=1)
            for i in range(n)))
        sent += n

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.config.port))
    sock.setblocking(False)
    async with viewer(server.ws_url, issuer.mint("ann", "viewer", name="Ann"), "stage") as ann:
        slow = await open_client(server.ws_url, issuer.mint("slow", "viewer"), sock=sock)
        try:
            await slow.join("stage")
            await expect(row.nth(CONNECTIONS)).to_have_text("2")
            await expect(page.locator("#gw-total-connections")).to_have_text("2")
            await expect(row.nth(SLOW)).to_have_text("0")
            await slow.stop_reading()
            # Events in rounds, each read by Ann, until the server gives up on the slow reader.
            while realtime.hub.rooms["stage"] == 2:
                await publish(100)
                await ann.wait_gifts(sent)
                assert sent < 200_000, "the slow client was never disconnected"
            slow.start()
            assert await slow.wait_closed() == 4008
            await expect(row.nth(SLOW)).to_have_text("1")
            await expect(page.locator("#gw-total-slow")).to_have_text("1")
            await expect(row.nth(CONNECTIONS)).to_have_text("1")
            room = page.locator('#gw-rooms tr[data-room="stage"]').locator("td")
            await expect(room.nth(3)).not_to_have_text("0")  # the room's events/s
            # The process's own rates are per heartbeat: shown while events keep coming.
            flowing = asyncio.create_task(_forever(publish))
            try:
                await expect(row.nth(EVENTS)).not_to_have_text("0")
                await expect(row.nth(DELIVERIES)).not_to_have_text("0")
            finally:
                flowing.cancel()
                await asyncio.gather(flowing, return_exceptions=True)
        finally:
            await slow.close()
    await expect(row.nth(RATE_LIMITED)).to_have_text("0")
    await expect(row.nth(ERRORS)).to_have_text("0")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        gift = {"room": "stage", "gift": "rose", "count": 1}
        auth = {"authorization": "Bearer " + issuer.mint("ann", "viewer")}
        first = await http.post("/api/gifts", headers=auth, json={**gift, "tx": "h1"})
        assert first.status_code == 200, first.text
        second = await http.post("/api/gifts", headers=auth, json={**gift, "tx": "h2"})
        assert second.status_code == 429, second.text
        assert (await http.get("/api/me/balance")).status_code == 401
    await expect(row.nth(RATE_LIMITED)).to_have_text("1")
    await expect(page.locator("#gw-total-ratelimited")).to_have_text("1")
    await expect(row.nth(ERRORS)).to_have_text("2")  # the 429 and the 401
    await expect(page.locator("#gw-total-errors")).to_have_text("2")


async def _forever(publish: Callable[[int], Awaitable[None]]) -> None:
    while True:
        await publish(10)
