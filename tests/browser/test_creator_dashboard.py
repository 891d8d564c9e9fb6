"""The creator dashboard in Chromium against a real server: sign in (development), go live, set
the goal, change overlay settings that an open overlay applies at once (sound on included),
rotate the overlay key (the old overlay is told, stops and keeps retrying; the new URL works),
copy the URL, earnings per stream, a payout request and its history, the moderation lists, end
the stream. Screenshots of the dashboard and of the overlay with its recent-gifts ticker go to
docs/img/ (README links them)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page

from server.auth import TokenIssuer
from server.money import streams
from tests.browser.support import fund, viewer, wait_page
from tests.support.servers import RunningServer

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs" / "img"
CREATOR = "creator1"


async def dashboard_action(page: Page, button: str, done: str) -> None:
    """Click, then wait for the status line to report the outcome (success or refusal)."""
    await page.evaluate("document.getElementById('gw-status').textContent = ''")
    await page.click(button)
    await page.wait_for_function("document.getElementById('gw-status').textContent !== ''")
    text = await page.text_content("#gw-status")
    assert text == done, text


# Resolves once an alert is on the stage with its entrance over: its finite animations finished
# (a looping one never does), and it is still there (the fake alerts come and go on their own).
SETTLED_ALERT = """async () => {
  for (;;) {
    const icon = document.querySelector("#gw-stage .gw-alert:not(.gw-leaving) .gw-icon");
    if (icon) {
      const entrance = icon.getAnimations()
        .filter((a) => a.effect.getComputedTiming().iterations !== Infinity);
      const done = await Promise.allSettled(entrance.map((a) => a.finished));
      if (icon.isConnected && !icon.closest(".gw-leaving") &&
          done.every((d) => d.status === "fulfilled")) return;
    }
    await new Promise((frame) => requestAnimationFrame(frame));
  }
}"""


async def table(page: Page, selector: str) -> list[list[str]]:
    return [await row.locator("td").all_text_contents()
            for row in await page.locator(f"{selector} tbody tr").all()]


async def open_key_overlay(context: BrowserContext, url: str) -> Page:
    overlay = await context.new_page()
    await overlay.goto(url + "&gap=0")
    await wait_page(overlay, "window.giftwireOverlay?.state === 'joined' && "
                             "window.giftwireOverlay.settingsApplied >= 1")
    return overlay


async def test_the_dashboard_runs_a_stream_and_its_overlay(
    server: RunningServer, page: Page, context: BrowserContext, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    room = CREATOR  # the dashboard's room defaults to the creator's user id
    await page.goto(f"{server.base_url}/creator")
    await page.fill("#gw-dev-user", CREATOR)
    await page.click("#gw-dev-go")
    await page.wait_for_function("document.body.dataset.loaded === '1'")
    assert await page.text_content("#gw-live-state") == "not created yet: go live once"

    # -- go live, set the goal --
    await page.fill("#gw-title", "Friday stream")
    await dashboard_action(page, "#gw-go-live", "you are live")
    info = await streams.room_info(rt, room)
    assert info is not None and info.live and info.title == "Friday stream"
    await page.wait_for_function("window.giftwireCreator.overlayUrl !== ''")
    await page.fill("#gw-goal-title", "New mic")
    await page.fill("#gw-goal-target", "5000")
    await dashboard_action(page, "#gw-goal-set", "goal set")
    assert await page.text_content("#gw-goal-state") == "New mic: 0 / 5,000 coins"

    # -- the overlay URL opens an overlay that applies a changed setting at once --
    old_url = await page.evaluate("window.giftwireCreator.overlayUrl")
    assert "/overlay?key=ok1." in old_url
    old = await open_key_overlay(context, old_url)
    assert await old.evaluate("window.giftwireOverlay.settings.top") is True
    assert await old.evaluate("window.giftwireOverlay.settings.sound") is False
    await page.uncheck("#gw-settings input[name=top]")
    await page.check("#gw-settings input[name=sound]")
    await page.fill("#gw-settings input[name=min_coins]", "100")
    await dashboard_action(page, "#gw-settings-save", "settings saved")
    await wait_page(old, "window.giftwireOverlay.settingsApplied >= 2")
    assert await old.evaluate("window.giftwireOverlay.settings.min_coins") == 100
    assert await old.evaluate("window.giftwireOverlay.settings.sound") is True
    assert await old.is_hidden("#gw-top")
    # The live preview got the form's settings too.
    preview = page.frame_locator("#gw-preview")
    assert await preview.locator("#gw-top").is_hidden()

    # A 1-coin Rose is under the new minimum: ticker only; a 299-coin Corgi gets the alert.
    await fund(rt, "ann", 10_000)
    async with viewer(server.ws_url, issuer.mint("ann", "viewer", name="Ann"), room) as ann:
        await ann.gift("rose", 1)
        await ann.gift("corgi", 1)
        await ann.wait_gifts(2)
    await wait_page(old, "window.giftwireOverlay.shownTotal >= 1 && "
                         "window.giftwireOverlay.tickerTotal >= 2")
    shown = await old.evaluate("window.giftwireOverlay.shown.map((a) => a.gift)")
    assert shown == ["corgi"]
    # Sound on: the Corgi's alert played its tier's motif; the Rose, ticker only, none.
    assert await old.evaluate("window.giftwireOverlay.sounds") == 1
    ticker = await old.locator("#gw-ticker-list li").all_text_contents()
    assert ticker[0].endswith("299 coins") and ticker[1].endswith("Rose x 11 coin")
    await wait_page(old, "window.giftwireOverlay.goal?.progress === 300")  # 1 + 299 coins
    # The screenshot once the Corgi's entrance animation has finished (an event, not a delay).
    await old.evaluate("Promise.all(document.querySelector('.gw-alert .gw-icon')"
                       ".getAnimations().map((a) => a.finished))")
    await old.screenshot(path=str(DOCS / "overlay-ticker.png"))

    # -- rotate: the old overlay is told and stops (and keeps retrying); the new URL works --
    connects = await old.evaluate("window.giftwireOverlay.stats.connects")
    page.once("dialog", lambda dialog: dialog.dismiss())  # asked first; "no" changes nothing
    await dashboard_action(page, "#gw-rotate",
                           "rotation cancelled: the overlay URL is unchanged")
    assert await page.evaluate("window.giftwireCreator.overlayUrl") == old_url
    page.once("dialog", lambda dialog: dialog.accept())
    await dashboard_action(page, "#gw-rotate", "overlay key rotated")
    new_url = await page.evaluate("window.giftwireCreator.overlayUrl")
    assert new_url != old_url and "/overlay?key=ok1." in new_url
    await wait_page(old, "document.body.dataset.keyInvalid === 'true'")
    assert "no longer valid" in (await old.text_content("#gw-status") or "")
    assert await old.is_visible("#gw-status")
    await wait_page(old, f"window.giftwireOverlay.stats.connects >= {connects + 2}")
    assert "overlay_key_invalid" in await old.evaluate("window.giftwireOverlay.errors")
    assert await old.evaluate("window.giftwireOverlay.state") != "joined"
    new = await open_key_overlay(context, new_url)
    async with viewer(server.ws_url, issuer.mint("ann", "viewer", name="Ann"), room) as ann:
        await ann.gift("money_gun", 2)
        await ann.wait_gifts(1)
    await wait_page(new, "window.giftwireOverlay.shownTotal >= 1")
    assert await new.evaluate("[window.giftwireOverlay.shown[0].gift, "
                              "window.giftwireOverlay.shown[0].count]") == ["money_gun", 2]
    assert await new.evaluate("window.giftwireOverlay.sounds") == 1  # the saved settings
    assert await old.evaluate("window.giftwireOverlay.tickerTotal") == 2
    # The dashboard's goal line follows the gifts (it re-reads the room while open).
    await page.wait_for_function("document.getElementById('gw-goal-state').textContent === "
                                 "'New mic: 1,300 / 5,000 coins'")
    # -- copy: the clipboard holds the new URL --
    await context.grant_permissions(["clipboard-read", "clipboard-write"],
                                    origin=server.base_url)
    await dashboard_action(page, "#gw-copy", "overlay URL copied")
    assert await page.evaluate("navigator.clipboard.readText()") == new_url

    # -- earnings per stream (from the Postgres ledger), a payout request and its history --
    await rt.components["flusher"].wait_caught_up()
    await dashboard_action(page, "#gw-earnings-refresh", "refresh: done")
    assert await page.text_content("#gw-diamonds") == "1,300"  # 1 + 299 + 2 x 500, 1:1
    streams_rows = await table(page, "#gw-streams")
    assert [row[1:] for row in streams_rows] == [["live", "3", "1,300"]]
    await page.fill("#gw-redeem-amount", "1000")
    await dashboard_action(page, "#gw-redeem",
                           "payout requested: 1,000 diamonds (300 diamonds left)")
    assert await page.text_content("#gw-diamonds") == "300"
    await rt.components["flusher"].wait_caught_up()
    await dashboard_action(page, "#gw-earnings-refresh", "refresh: done")
    assert [row[1] for row in await table(page, "#gw-redemptions")] == ["1,000"]
    # The room's moderation lists, as the moderation API changed them.
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        r = await http.post(f"/api/rooms/{room}/blocks", json={"user": "troll", "reason": "spam"},
                            headers={"Authorization": "Bearer " + issuer.mint(CREATOR,
                                                                              "creator")})
        assert r.status_code == 200, r.text
    await dashboard_action(page, "#gw-moderation-refresh", "refresh: done")
    assert await page.locator("#gw-blocks li").all_text_contents() == ["troll (spam) Unblock"]
    audit = await page.locator("#gw-audit tbody tr").all_text_contents()
    assert len(audit) == 1 and "block" in audit[0] and "troll" in audit[0]
    await page.evaluate("window.scrollTo(0, 0)")
    # The screenshot with one of the preview's fake alerts in, its entrance finished (events).
    frame = await (await page.wait_for_selector("#gw-preview")).content_frame()
    assert frame is not None
    await frame.evaluate(SETTLED_ALERT)
    await page.screenshot(path=str(DOCS / "creator-dashboard.png"), full_page=True)

    # -- end the stream --
    await dashboard_action(page, "#gw-end", "stream ended")
    assert await page.text_content("#gw-live-state") == "offline"
    info = await streams.room_info(rt, room)
    assert info is not None and not info.live
    assert (await table(page, "#gw-streams"))[0][1] != "live"


async def test_every_catalog_gift_has_its_own_picture(server: RunningServer, page: Page
                                                       ) -> None:
    await page.goto(f"{server.base_url}/overlay?test=1&auto=0")
    pictures = await page.evaluate("""async () => {
      const gifts = await import('/static/gifts.js');
      await gifts.loadCatalog();
      const catalog = await (await fetch('/api/catalog')).json();
      return catalog.gifts.map((g) => [g.id, gifts.artFor(g.id)]);
    }""")
    assert len(pictures) == 11
    assert len({svg for _, svg in pictures}) == len(pictures), "two gifts share a picture"


async def test_sound_follows_the_settings_one_motif_per_alert(server: RunningServer, page: Page
                                                               ) -> None:
    await page.goto(f"{server.base_url}/overlay?test=1&auto=0&gap=0")
    await page.wait_for_function("typeof window.giftwireOverlay?.inject === 'function'")
    settings = ("{type: 'overlay_settings', room: 'r', min_coins: 0, alert_ms: 1000, alerts: true,"
                " combos: true, top: true, goal: true, ticker: true, volume: 50, sound: %s}")
    gift = ("{type: 'gift', room: 'r', seq: %d, epoch: 'e', eid: 'e%d', sender: 'u', name: 'U',"
            " gift: 'rose', count: 1, coins: 1, ts: 1}")
    await page.evaluate(f"window.giftwireOverlay.inject({settings % 'false'})")
    await page.evaluate(f"window.giftwireOverlay.inject({gift % (1, 1)})")
    await page.wait_for_function("window.giftwireOverlay.shownTotal === 1")
    assert await page.evaluate("window.giftwireOverlay.sounds") == 0
    await page.evaluate(f"window.giftwireOverlay.inject({settings % 'true'})")
    await page.evaluate(f"window.giftwireOverlay.inject({gift % (2, 2)})")
    await page.wait_for_function("window.giftwireOverlay.shownTotal === 2")
    assert await page.evaluate("window.giftwireOverlay.sounds") == 1


async def test_the_dashboard_and_its_preview_run_under_the_pages_csp(
    server: RunningServer, browser: Browser
) -> None:
    """The page fixture bypasses the CSP (Playwright's predicates need eval); here it holds."""
    ctx = await browser.new_context()
    try:
        page = await ctx.new_page()
        refused: list[str] = []
        page.on("console", lambda msg: refused.append(msg.text)
                if "Content Security Policy" in msg.text else None)
        await page.goto(f"{server.base_url}/creator")
        await page.fill("#gw-dev-user", CREATOR)
        await page.click("#gw-dev-go")
        await page.locator("body[data-loaded='1']").wait_for(state="attached")
        await page.click("#gw-go-live")
        await page.locator("#gw-live-state[data-live='true']").wait_for(state="attached")
        await page.locator("body[data-loaded='2']").wait_for(state="attached")
        preview = page.frame_locator("#gw-preview")
        await preview.locator("#gw-stage .gw-alert").first.wait_for(state="attached")
        assert refused == []
    finally:
        await ctx.close()
