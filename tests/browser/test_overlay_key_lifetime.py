"""An overlay opened with the dashboard's key outlives every token: on a server whose tokens live
3 seconds, a token overlay dies of `token_expired` (the event that shows the lifetime passed),
while the key overlay, cut off by a network blip after that, reconnects, keeps showing gifts, and
reloads fine. Synchronised on the pages' own states, never on time."""

from __future__ import annotations

import pytest
from playwright.async_api import BrowserContext, Page

from server.config import Config
from server.live.overlay_keys import OverlayKeys
from tests.browser.support import CuttableProxy, fund, live_room, viewer, wait_page, watched_server
from tests.conftest import with_config

pytestmark = pytest.mark.browser

ROOM = "longrun"


async def test_a_key_overlay_survives_past_the_token_lifetime(
    config: Config, redis: object, pool: object, page: Page, context: BrowserContext
) -> None:
    async with watched_server(with_config(config, token_ttl_s=3)) as server:
        rt = server.runtime
        await live_room(rt, ROOM)
        await fund(rt, "eve", 10_000)
        key = await OverlayKeys(rt).issue(ROOM, "creator1")
        token_page = await context.new_page()
        async with CuttableProxy(server.config.port) as proxy:
            await page.goto(f"{proxy.base_url}/overlay?key={key}&backoff=50&gap=0")
            await wait_page(page, "window.giftwireOverlay?.state === 'joined'")
            token = rt.issuer.mint("creator1", "overlay", room=ROOM)
            await token_page.goto(f"{server.base_url}/overlay?token={token}")
            # The token overlay ends when its token does: from here on every token minted
            # before the key overlay opened has expired.
            await wait_page(token_page, "window.giftwireOverlay.state === 'failed' && "
                                        "window.giftwireOverlay.detail === 'token_expired'")
            assert await page.evaluate("window.giftwireOverlay.state") == "joined"
            proxy.cut()  # a network blip after the token lifetime
            await wait_page(page, "window.giftwireOverlay.stats.connects >= 2 && "
                                  "window.giftwireOverlay.state === 'joined'")
            async with viewer(server.ws_url, rt.issuer.mint("eve", "viewer", name="Eve"),
                              ROOM) as eve:
                await eve.gift("doughnut", 1)
                await eve.wait_gifts(1)
            await wait_page(page, "window.giftwireOverlay.shownTotal >= 1 && "
                                  "window.giftwireOverlay.tickerTotal >= 1")
            assert await page.evaluate("window.giftwireOverlay.shown[0].name") == "Eve"
            # OBS reloading the browser source: the same URL still opens and joins.
            await page.reload()
            await wait_page(page, "window.giftwireOverlay?.state === 'joined'")
        await token_page.close()
