"""Overlay settings end to end: saved per room in Postgres (Redis a cache), validated (bad input
changes nothing), sent to an overlay after `joined` and pushed at once to every open overlay of
the room on every server, never to viewers; concurrent editors both land."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from protocol import OverlaySettings, Ping
from server.auth import TokenIssuer
from server.config import Config
from server.live.overlay_settings import DEFAULTS
from tests.creator.support import CREATOR, auth
from tests.hub.support import Client, open_client, setup_room
from tests.support.servers import RunningServer, inprocess_server

ROOM = "studio"




def settings_of(client: Client) -> list[OverlaySettings]:
    return [m for m in client.messages if isinstance(m, OverlaySettings)]


async def wait_settings(client: Client, n: int) -> OverlaySettings:
    await client.wait(lambda _: len(settings_of(client)) >= n)
    return settings_of(client)[n - 1]


async def change(http: httpx.AsyncClient, issuer: TokenIssuer, **fields: Any) -> httpx.Response:
    return await http.post(f"/api/rooms/{ROOM}/overlay-settings", headers=auth(issuer),
                           json=fields)


async def test_defaults_then_a_change_is_saved_and_pushed_to_overlays_only(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    await setup_room(server.runtime, ROOM, CREATOR)
    r = await http.get(f"/api/rooms/{ROOM}/overlay-settings", headers=auth(issuer))
    assert r.status_code == 200 and r.json() == {"room": ROOM, **DEFAULTS}
    overlay = await open_client(server.ws_url, issuer.mint(CREATOR, "overlay", room=ROOM))
    viewer = await open_client(server.ws_url, issuer.mint("viewer1", "viewer"), binary=False)
    try:
        await overlay.join(ROOM)
        await viewer.join(ROOM)
        first = await wait_settings(overlay, 1)
        assert first.alert_ms == DEFAULTS["alert_ms"] and first.ticker
        r = await change(http, issuer, min_coins=100, sound=True, volume=35, goal=False)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["min_coins"], body["sound"], body["volume"], body["goal"]) == (
            100, True, 35, False)
        pushed = await wait_settings(overlay, 2)
        assert pushed == OverlaySettings(room=ROOM, **{k: v for k, v in body.items()
                                                      if k != "room"})
        # The viewer got the same room's traffic but no settings: a ping round trip orders it.
        await viewer.send(Ping(id="p"))
        await viewer.reply("p")
        assert not settings_of(viewer)
        r = await http.get(f"/api/rooms/{ROOM}/overlay-settings", headers=auth(issuer))
        assert r.json() == body
    finally:
        await asyncio.gather(overlay.close(), viewer.close())


async def test_postgres_is_the_record_and_the_cache_refills(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, ROOM, CREATOR)
    assert (await change(http, issuer, alert_ms=9000, combos=False)).status_code == 200
    await rt.redis.delete(rt.keys.room_overlay(ROOM))  # Redis lost the cache
    r = await http.get(f"/api/rooms/{ROOM}/overlay-settings", headers=auth(issuer))
    assert (r.json()["alert_ms"], r.json()["combos"]) == (9000, False)
    assert await rt.redis.hget(rt.keys.room_overlay(ROOM), "settings") is not None


@pytest.mark.parametrize(("fields", "code"), [
    ({"volume": 101}, "out_of_range"),
    ({"alert_ms": 999}, "out_of_range"),
    ({"min_coins": -1}, "out_of_range"),
    ({"sound": "yes"}, "wrong_type"),
    ({"alerts": 1}, "wrong_type"),
    ({"volume": 1.5}, "wrong_type"),
    ({"widgets": ["alerts"]}, "unknown_field"),
    ({"room": "other"}, "unknown_field"),
])
async def test_bad_input_is_refused_and_changes_nothing(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer,
    fields: dict[str, Any], code: str
) -> None:
    await setup_room(server.runtime, ROOM, CREATOR)
    # A valid change rides along: the request is refused whole.
    valid = {"volume": 20} if "sound" in fields else {"sound": True}
    r = await change(http, issuer, **valid, **fields)
    assert (r.status_code, r.json()["code"]) == (400, code), r.text
    r = await http.get(f"/api/rooms/{ROOM}/overlay-settings", headers=auth(issuer))
    assert r.json() == {"room": ROOM, **DEFAULTS}


async def test_only_the_rooms_creator_reads_or_changes_them(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    await setup_room(server.runtime, ROOM, CREATOR)
    for headers in (auth(issuer, "creator2"), auth(issuer, "viewer1", "viewer"),
                    {"Authorization": "Bearer " + issuer.mint(CREATOR, "overlay", room=ROOM)}):
        r = await http.post(f"/api/rooms/{ROOM}/overlay-settings", headers=headers,
                            json={"sound": True})
        assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = await http.get(f"/api/rooms/{ROOM}/overlay-settings", headers=auth(issuer))
    assert r.json()["sound"] is False


async def test_concurrent_editors_each_change_lands(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    await setup_room(server.runtime, ROOM, CREATOR)
    fields = [{"min_coins": 5}, {"alert_ms": 7000}, {"alerts": False}, {"combos": False},
              {"top": False}, {"goal": False}, {"ticker": False}, {"sound": True},
              {"volume": 10}]
    answers = await asyncio.gather(*(change(http, issuer, **f) for f in fields))
    assert all(a.status_code == 200 for a in answers)
    r = await http.get(f"/api/rooms/{ROOM}/overlay-settings", headers=auth(issuer))
    expected: dict[str, Any] = {"room": ROOM}
    for f in fields:
        expected.update(f)
    assert r.json() == expected


@pytest.mark.both_modes  # on a cluster too: scripts SPUBLISH, processes SSUBSCRIBE
async def test_a_change_on_one_server_reaches_overlays_on_another(
    config: Config, redis: object, pool: object, issuer: TokenIssuer
) -> None:
    async with inprocess_server(config) as one, inprocess_server(config) as two:
        await setup_room(one.runtime, ROOM, CREATOR)
        overlay = await open_client(two.ws_url, issuer.mint(CREATOR, "overlay", room=ROOM))
        try:
            await overlay.join(ROOM)
            await wait_settings(overlay, 1)
            async with httpx.AsyncClient(base_url=one.base_url) as http:
                assert (await change(http, issuer, ticker=False)).status_code == 200
            assert (await wait_settings(overlay, 2)).ticker is False
        finally:
            await overlay.close()


async def test_an_overlay_joining_later_gets_the_saved_settings(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    await setup_room(server.runtime, ROOM, CREATOR)
    assert (await change(http, issuer, min_coins=500)).status_code == 200
    overlay = await open_client(server.ws_url, issuer.mint(CREATOR, "overlay", room=ROOM))
    try:
        await overlay.join(ROOM)
        assert (await wait_settings(overlay, 1)).min_coins == 500
    finally:
        await overlay.close()

