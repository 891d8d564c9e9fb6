"""The operator view in Chromium: a live room appears, and the ledger lag number follows the
ledger streams (entries appended with no flusher running, then drained by a reconcile)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from server.auth import TokenIssuer
from server.config import Config
from tests.browser.support import fund, live_room, viewer
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
