"""The overlay page itself, fed through its test mode: widgets, animations, options.

Test mode (`?test=1&auto=0`) lets a test inject events with the server's shapes straight into the
page's handlers, so these tests pin down what the page draws; test_overlay_live.py and the others
feed it through a real server instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.browser.support import wait_page
from tests.support.servers import RunningServer

pytestmark = pytest.mark.browser

ROOM = "test-room"
SNAPSHOT = {
    "type": "joined", "room": ROOM, "creator": "c", "live": True, "viewers": 3,
    "top": [{"user": "mira", "name": "Mira", "coins": 45_999},
            {"user": "ravi", "name": "Ravi", "coins": 7_520},
            {"user": "aiko", "name": "Aiko", "coins": 1_230}],
    "goal": {"title": "New camera", "target": 80_000, "progress": 54_749},
    "seq": 0, "resume": "none",
}


def gift(seq: int, gift_id: str, count: int, unit: int, name: str = "Ann",
         **extra: Any) -> dict[str, Any]:
    return {
        "type": "gift", "room": ROOM, "seq": seq, "eid": f"e{seq}", "sender": name.lower(),
        "name": name, "gift": gift_id, "count": count, "coins": count * unit, "ts": 0, **extra,
    }


def combo(seq: int, combo_id: str, count: int, name: str = "Ravi") -> dict[str, Any]:
    return {"type": "combo", "room": ROOM, "seq": seq, "eid": f"e{seq}", "combo": combo_id,
            "sender": name.lower(), "name": name, "gift": "rose", "count": count, "ts": 0}


async def open_test_mode(page: Page, server: RunningServer, query: str = "") -> None:
    await page.goto(f"{server.base_url}/overlay?test=1&auto=0&{query}")
    await wait_page(page, "typeof window.giftwireOverlay?.inject === 'function'")


async def inject(page: Page, *msgs: dict[str, Any]) -> None:
    await page.evaluate("(msgs) => msgs.forEach((m) => window.giftwireOverlay.inject(m))", msgs)


async def test_a_universe_takes_the_whole_screen_and_a_rose_does_not(
    server: RunningServer, page: Page, artifacts: Path
) -> None:
    await open_test_mode(page, server, "duration=60000&bg=%23182030")
    await inject(page, SNAPSHOT, gift(1, "rose", 3, 1, "Zoe"))
    rose = page.locator("#gw-stage .gw-alert")
    await rose.wait_for()
    assert await rose.get_attribute("class") == "gw-alert gw-tier-1"
    assert "Zoe" in await rose.inner_text() and "x 3" in await rose.inner_text()
    rose_box = await rose.bounding_box()
    rose_parts = await rose.locator("*").count()
    assert rose_box is not None
    await page.screenshot(path=artifacts / "overlay-rose.png")

    # A fresh page, so the Universe is the first alert and shows at once.
    await open_test_mode(page, server, "duration=60000&bg=%23182030")
    await inject(page, SNAPSHOT, gift(1, "universe", 1, 44_999, "Mira"), combo(2, "c1", 37))
    universe = page.locator("#gw-stage .gw-alert.gw-tier-5")
    await universe.wait_for()
    box = await universe.bounding_box()
    assert box is not None
    # The Universe fills the viewport and brings far more moving parts than a Rose.
    assert box["width"] * box["height"] >= 1280 * 720 * 0.99
    assert box["width"] * box["height"] > 10 * rose_box["width"] * rose_box["height"]
    assert await universe.locator("*").count() > 4 * rose_parts
    assert await page.locator(".gw-combo .gw-combo-count").inner_text() == "Rose x 37"
    # Mid-animation: the confetti is in flight.
    await wait_page(page, "document.getAnimations().some((a) => a.animationName === 'gw-burst'"
                          " && a.currentTime > 450)")
    await page.screenshot(path=artifacts / "overlay-universe.png")


async def test_widgets_option_shows_only_the_chosen_widgets(
    server: RunningServer, page: Page
) -> None:
    await open_test_mode(page, server, "widgets=alerts,top")
    await inject(page, SNAPSHOT, combo(1, "c1", 4), gift(2, "doughnut", 1, 30))
    await page.locator("#gw-stage .gw-alert").wait_for()
    assert await page.locator("#gw-top").is_visible()
    assert not await page.locator("#gw-goal").is_visible()
    assert not await page.locator("#gw-combos").is_visible()


async def test_a_combo_counter_is_replaced_by_its_settled_total(
    server: RunningServer, page: Page
) -> None:
    await open_test_mode(page, server, "duration=60000")
    # Progress can be coalesced and a late lower count must not move the counter back.
    await inject(page, combo(1, "c1", 3), combo(2, "c1", 9), combo(3, "c1", 7))
    counter = page.locator(".gw-combo .gw-combo-count")
    assert await counter.inner_text() == "Rose x 9"
    # The same combo id from another sender is another combo.
    await inject(page, combo(4, "c1", 2, name="Lena"))
    assert await page.locator(".gw-combo").count() == 2
    await inject(page, gift(5, "rose", 11, 1, "Ravi", combo="c1"))
    ravi = page.locator(".gw-combo.gw-settled")
    assert await ravi.locator(".gw-combo-count").inner_text() == "Rose x 11"
    alert = page.locator("#gw-stage .gw-alert")
    assert "x 11" in await alert.inner_text()
    assert await page.evaluate("window.giftwireOverlay.shownTotal") == 1
    # The settled row leaves on its own; Lena's running combo stays.
    await wait_page(page, "document.querySelectorAll('.gw-combo').length === 1")
    assert await counter.inner_text() == "Rose x 2"


async def test_test_mode_generates_gifts_by_itself(server: RunningServer, page: Page) -> None:
    await page.goto(f"{server.base_url}/overlay?test=1&duration=40&gap=0")
    await wait_page(page, "window.giftwireOverlay.shownTotal >= 3")
    assert await page.evaluate("window.giftwireOverlay.state") == "test"
    assert await page.locator("#gw-goal-numbers").inner_text() != ""


async def test_alert_queue_merges_then_drops_the_least_valuable_when_full(
    server: RunningServer, page: Page
) -> None:
    await open_test_mode(page, server)
    result = await page.evaluate("""async () => {
      const { AlertQueue } = await import('/static/alert-queue.js');
      const a = (seq, sender, gift, coins) =>
        ({ eids: ['e' + seq], events: 1, seq, sender, gift, count: 1, coins, combo: null });
      const q = new AlertQueue({ order: 'value', max: 3 });
      const outcomes = [
        q.push(a(1, 'ann', 'rose', 1)), q.push(a(2, 'bo', 'corgi', 299)),
        q.push(a(3, 'cy', 'rose', 1)),
        q.push(a(4, 'ann', 'rose', 1)),       // full: merges into ann's rose
        q.push(a(5, 'dee', 'universe', 44999)), // full, nothing to merge: a rose goes
        q.push(a(6, 'eve', 'rose', 1)),       // full and the least valuable: dropped
      ];
      const order = [];
      for (let x = q.shift(); x; x = q.shift()) order.push([x.gift, x.count, x.eids.join()]);
      return { outcomes, order, merged: q.merged, dropped: q.dropped };
    }""")
    assert result["outcomes"] == ["queued", "queued", "queued", "merged", "queued", "dropped"]
    assert result["order"] == [["universe", 1, "e5"], ["corgi", 1, "e2"], ["rose", 2, "e1,e4"]]
    assert (result["merged"], result["dropped"]) == (1, 2)


async def test_event_id_window_forgets_only_the_oldest(server: RunningServer, page: Page) -> None:
    await open_test_mode(page, server)
    result = await page.evaluate("""async () => {
      const { EidWindow, parseFrame } = await import('/static/gw-client.js');
      const w = new EidWindow(3);
      ['a', 'b', 'c', 'd'].forEach((e) => w.add(e));
      return { size: w.size, a: w.has('a'), b: w.has('b'), d: w.has('d'),
               one: parseFrame('{"type":"pong"}').length,
               batch: parseFrame('[{"type":"gift"},{"type":"viewers"}]').map((m) => m.type) };
    }""")
    assert result == {"size": 3, "a": False, "b": True, "d": True, "one": 1,
                      "batch": ["gift", "viewers"]}
