"""The room's history restarts under the overlay (Redis lost the room's state: a failover to a
replica that never had it): the new epoch's seqs start again at 1. The overlay is told `gap`,
shows every gift of the new epoch (none dropped as "seen", none twice), and a later reconnect
resumes in the new epoch."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from protocol import Gap
from server.auth import TokenIssuer
from tests.browser.support import (
    CuttableProxy,
    fund,
    live_room,
    open_overlay,
    shown,
    viewer,
    wait_page,
)
from tests.support.servers import RunningServer

pytestmark = pytest.mark.browser

ROOM = "epochs"


async def test_a_restarted_history_is_a_gap_and_every_new_gift_shows_once(
    server: RunningServer, page: Page, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    k = rt.keys
    await live_room(rt, ROOM)
    await fund(rt, "ivy", 100_000)
    overlay = issuer.mint("creator1", "overlay", room=ROOM)
    async with (
        CuttableProxy(server.config.port) as proxy,
        viewer(server.ws_url, issuer.mint("ivy", "viewer", name="Ivy"), ROOM) as ivy,
    ):
        await open_overlay(page, proxy.base_url, overlay,
                           "order=fifo&duration=15&gap=0&backoff=50")
        for gift in ("rose", "doughnut", "rose"):
            await ivy.gift(gift)
        await wait_page(page, "window.giftwireOverlay.shownTotal === 3")
        old = await page.evaluate("window.giftwireOverlay.epoch")

        # The room's seq, epoch and history are gone: the next event is seq 1 again.
        await rt.redis.delete(k.room_seq(ROOM), k.room_epoch(ROOM), k.room_history(ROOM))
        for gift in ("ice_cream", "rose"):
            await ivy.gift(gift)
        events = await ivy.wait_gifts(5)
        assert [e.seq for e in events] == [1, 2, 3, 1, 2]
        assert len({e.eid for e in events}) == 5
        await wait_page(page, "window.giftwireOverlay.shownTotal === 5")
        stats = await page.evaluate("window.giftwireOverlay.stats")
        assert stats["gaps"] == 1 and stats["received"] == 5
        new = await page.evaluate("window.giftwireOverlay.epoch")
        assert new == events[-1].epoch != old
        assert [m.epoch for m in ivy.messages if isinstance(m, Gap)] == [new]

        # A blip: the overlay resumes in the new epoch, with nothing missed and nothing twice.
        proxy.cut()
        await ivy.gift("doughnut")
        await wait_page(page, "window.giftwireOverlay.stats.joins === 2"
                              " && window.giftwireOverlay.shownTotal === 6")
        assert (await page.evaluate("window.giftwireOverlay.stats"))["gaps"] == 1
    alerts = await shown(page)
    assert [a["eids"][0] for a in alerts] == [e.eid for e in await ivy.wait_gifts(6)]
