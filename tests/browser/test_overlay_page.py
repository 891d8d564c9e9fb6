"""The overlay page itself, fed through its test mode: widgets, animations, queue order, bounds.

Test mode (`?test=1&auto=0`) lets a test inject events with the server's shapes straight into the
page's handlers, so these tests pin down the page's behaviour without timing on a server; the
end-to-end tests in test_overlay_live.py feed it through a real server instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.support.servers import RunningServer

pytestmark = pytest.mark.browser

ROOM = "test-room"


def gift(seq: int, gift_id: str, count: int, unit: int, name: str = "Ann", **extra: Any) -> dict:
    return {
        "type": "gift", "room": ROOM, "seq": seq, "eid": f"e{seq}", "sender": name.lower(),
        "name": name, "gift": gift_id, "count": count, "coins": count * unit, "ts": 0, **extra,
    }


async def open_test_mode(page: Page, server: RunningServer, query: str = "") -> None:
    await page.goto(f"{server.base_url}/overlay?test=1&auto=0&{query}")
    await page.wait_for_function("typeof window.giftwireOverlay?.inject === 'function'")


async def inject(page: Page, *msgs: dict) -> None:
    await page.evaluate("(msgs) => msgs.forEach((m) => window.giftwireOverlay.inject(m))", msgs)


async def test_a_universe_takes_the_whole_screen_and_a_rose_does_not(
    page: Page, server: RunningServer, artifacts: Path
) -> None:
    await open_test_mode(page, server, "duration=60000&order=fifo&bg=%23182030")
    await inject(
        page,
        {"type": "joined", "room": ROOM, "creator": "c", "live": True, "viewers": 3,
         "top": [{"user": "mira", "name": "Mira", "coins": 35999},
                 {"user": "ravi", "name": "Ravi", "coins": 1500},
                 {"user": "aiko", "name": "Aiko", "coins": 120}],
         "goal": {"title": "New camera", "target": 50000, "progress": 37620},
         "seq": 0, "resume": "none"},
        gift(1, "rose", 3, 1, "Zoe"),
    )
    rose = page.locator("#gw-stage .gw-alert")
    await rose.wait_for()
    assert await rose.get_attribute("class") == "gw-alert gw-tier-1"
    assert "Zoe" in await rose.inner_text()
    assert "x 3" in await rose.inner_text()
    rose_box = await rose.bounding_box()
    assert rose_box is not None
    await page.screenshot(path=artifacts / "overlay-rose.png")

    # A fresh page, so the Universe is the first alert and shows at once.
    await open_test_mode(page, server, "duration=60000&order=fifo&bg=%23182030")
    await inject(
        page,
        {"type": "joined", "room": ROOM, "creator": "c", "live": True, "viewers": 3,
         "top": [{"user": "mira", "name": "Mira", "coins": 35999},
                 {"user": "ravi", "name": "Ravi", "coins": 1500},
                 {"user": "aiko", "name": "Aiko", "coins": 120}],
         "goal": {"title": "New camera", "target": 50000, "progress": 37620},
         "seq": 0, "resume": "none"},
        gift(1, "universe", 1, 44999, "Mira"),
        {"type": "combo", "room": ROOM, "seq": 2, "eid": "e2", "combo": "c1", "sender": "ravi",
         "name": "Ravi", "gift": "rose", "count": 37, "ts": 0},
    )
    universe = page.locator("#gw-stage .gw-alert.gw-tier-5")
    await universe.wait_for()
    uni_box = await universe.bounding_box()
    assert uni_box is not None
    # The Universe fills the viewport and brings far more moving parts than a Rose.
    assert uni_box["width"] * uni_box["height"] >= 1280 * 720 * 0.99
    assert uni_box["width"] * uni_box["height"] > 10 * rose_box["width"] * rose_box["height"]
    parts = await universe.locator("*").count()
    assert parts > 50
    combo_text = await page.locator(".gw-combo .gw-combo-count").inner_text()
    assert combo_text == "Rose x 37"
    # Mid-animation: wait until the galaxy is turning (its transform is no longer the start).
    await page.wait_for_function(
        "getComputedStyle(document.querySelector('.gw-galaxy')).opacity === '1'"
    )
    await page.screenshot(path=artifacts / "overlay-universe.png")
