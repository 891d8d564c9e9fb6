"""Overlay keys end to end on a real server: the dashboard's key opens a read-only overlay session
that never expires, rotating it ends the open sessions of the old key (`overlay_key_invalid`,
4005) and refuses the old key from then on, while the new key works; a bad or foreign request
changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect

from protocol import (
    SUBPROTOCOL_JSON,
    CloseCode,
    ErrorCode,
    ErrorReply,
    Hello,
    Join,
    OverlaySettings,
    SendGift,
    Welcome,
    codec_for,
)
from protocol.limits import MIN_IDLE_TIMEOUT_HEARTBEATS
from server.auth import TokenIssuer
from server.config import Config
from server.live import overlay_keys
from tests.conftest import with_config
from tests.creator.support import CREATOR, auth
from tests.hub.support import Client, open_client, setup_room
from tests.support.servers import RunningServer, inprocess_server

ROOM = "stage.1"




async def overlay_key(http: httpx.AsyncClient, issuer: TokenIssuer) -> str:
    r = await http.get(f"/api/rooms/{ROOM}/overlay-key", headers=auth(issuer))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["url"].endswith(f"/overlay?key={body['key']}")
    return str(body["key"])


async def refused_hello(server: RunningServer, key: str) -> tuple[ErrorReply, int]:
    async with connect(server.ws_url, subprotocols=[SUBPROTOCOL_JSON]) as ws:
        codec = codec_for(SUBPROTOCOL_JSON)
        await ws.send(codec.encode_client(Hello(id="h", v=1, client="t", token=key)))
        (error,) = codec.decode_server(await ws.recv())
        await ws.wait_closed()
        assert isinstance(error, ErrorReply)
        assert ws.close_code is not None
        return error, ws.close_code


async def test_the_key_is_stable_and_opens_a_read_only_session_of_its_room(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    await setup_room(server.runtime, ROOM, CREATOR)
    key = await overlay_key(http, issuer)
    assert key == await overlay_key(http, issuer)  # the same URL until rotated
    assert overlay_keys.parse(key) == ROOM
    page = await http.get(f"/overlay?key={key}")
    assert page.status_code == 200 and "gw-stage" in page.text
    client = await open_client(server.ws_url, key)
    try:
        welcome = client.messages[0]
        assert isinstance(welcome, Welcome) and welcome.role == "overlay"
        await client.join(ROOM)
        settings = await client.wait(
            lambda msgs: next((m for m in msgs if isinstance(m, OverlaySettings)), None))
        assert settings.room == ROOM and settings.alerts  # the defaults, sent after joined
        await client.send(SendGift(id="g", room=ROOM, gift="rose", count=1, tx="t1"))
        refused = await client.reply("g")
        assert isinstance(refused, ErrorReply) and refused.code == ErrorCode.FORBIDDEN
        await setup_room(server.runtime, "other", "creator2")
        await client.send(Join(id="join-other", room="other"))
        other = await client.reply("join-other")
        assert isinstance(other, ErrorReply) and other.code == ErrorCode.FORBIDDEN
    finally:
        await client.close()


@pytest.fixture
async def slow_watch(config: Config, redis: object, pool: object) -> AsyncIterator[RunningServer]:
    """A server whose session watcher looks at revocations every 5 minutes, past the test's
    timeout: what ends a session in time there is the rotation's control message."""
    async with inprocess_server(with_config(config, heartbeat_s=600, idle_timeout_s=1800)) as s:
        yield s


async def test_rotating_ends_the_old_keys_sessions_and_the_new_key_works(
    slow_watch: RunningServer, issuer: TokenIssuer
) -> None:
    server = slow_watch
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        await _rotation(server, http, issuer)


async def _rotation(server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer) -> None:
    await setup_room(server.runtime, ROOM, CREATOR)
    old = await overlay_key(http, issuer)
    viewers_token = issuer.mint("viewer1", "viewer")
    overlay, viewer = await asyncio.gather(open_client(server.ws_url, old, binary=False),
                                           open_client(server.ws_url, viewers_token))
    try:
        await overlay.join(ROOM)
        await viewer.join(ROOM)
        r = await http.post(f"/api/rooms/{ROOM}/overlay-key/rotate", headers=auth(issuer))
        assert r.status_code == 200, r.text
        new = r.json()["key"]
        assert new != old and overlay_keys.parse(new) == ROOM
        assert await overlay.wait_closed() == CloseCode.OVERLAY_KEY_INVALID
        told = [m for m in overlay.messages
                if isinstance(m, ErrorReply) and m.code == ErrorCode.OVERLAY_KEY_INVALID]
        assert len(told) == 1 and told[0].id is None
        assert viewer.closed_code is None  # only the old key's sessions end
        assert await overlay_key(http, issuer) == new
        error, code = await refused_hello(server, old)
        assert (error.code, error.id, code) == ("overlay_key_invalid", "h", 4005)
        # The browser source still gets the page, which says the key is no longer valid.
        assert (await http.get(f"/overlay?key={old}")).status_code == 200
        fresh = await open_client(server.ws_url, new)
        try:
            await fresh.join(ROOM)
        finally:
            await fresh.close()
    finally:
        await asyncio.gather(overlay.close(), viewer.close())


async def test_a_rotated_key_is_caught_by_the_session_watcher_without_the_control_message(
    config: Config, redis: object, pool: object, issuer: TokenIssuer
) -> None:
    """The control message is pub/sub (lost while a process re-subscribes): the old key's
    revocation mark ends its sessions anyway, at the next check (every half heartbeat: a 2 s
    heartbeat here, so the check comes within a second, not the default's 10 s)."""
    quick = with_config(config, heartbeat_s=2, idle_timeout_s=2 * MIN_IDLE_TIMEOUT_HEARTBEATS)
    async with inprocess_server(quick) as server, httpx.AsyncClient(
            base_url=server.base_url) as http:
        rt = server.runtime
        await setup_room(rt, ROOM, CREATOR)
        old = await overlay_key(http, issuer)
        overlay: Client = await open_client(server.ws_url, old)
        try:
            await overlay.join(ROOM)
            await rt.redis.set(rt.keys.revoked(overlay_keys.session_id(old)), b"1")
            assert await overlay.wait_closed() == CloseCode.OVERLAY_KEY_INVALID
            assert any(isinstance(m, ErrorReply) and m.code == "overlay_key_invalid"
                       for m in overlay.messages)
        finally:
            await overlay.close()


@pytest.mark.parametrize("key", [
    "ok1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.stage.1",  # well-formed, never issued
    "ok1.short.stage.1",
])
async def test_an_unknown_or_malformed_key_is_refused_with_4005(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer, key: str
) -> None:
    await setup_room(server.runtime, ROOM, CREATOR)
    await overlay_key(http, issuer)
    error, code = await refused_hello(server, key)
    assert (error.code, code) == ("overlay_key_invalid", 4005)


async def test_only_the_rooms_creator_gets_or_rotates_its_key(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    await setup_room(server.runtime, ROOM, CREATOR)
    key = await overlay_key(http, issuer)
    for headers, code in [
        (auth(issuer, "creator2"), "forbidden"),
        (auth(issuer, "viewer1", "viewer"), "forbidden"),
        ({}, "unauthorized"),
        ({"Authorization": "Bearer " + key}, "unauthorized"),  # a key is no API token
    ]:
        for method, path in [("GET", "overlay-key"), ("POST", "overlay-key/rotate")]:
            r = await http.request(method, f"/api/rooms/{ROOM}/{path}", headers=headers)
            assert r.json()["code"] == code, (headers, path, r.text)
    r = await http.get("/api/rooms/nosuch/overlay-key", headers=auth(issuer))
    assert (r.status_code, r.json()["code"]) == (404, "room_not_found")
    r = await http.post(f"/api/rooms/{ROOM}/overlay-key/rotate", headers=auth(issuer),
                        json={"x": 1})
    assert (r.status_code, r.json()["code"]) == (400, "unknown_field")
    assert await overlay_key(http, issuer) == key  # nothing changed
    r = await http.get("/overlay?key=not-a-key")
    assert (r.status_code, r.json()["code"]) == (401, "overlay_key_invalid")


async def test_a_key_reads_its_rooms_battle_and_never_its_creators_wallet(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    """The overlay's battle bar asks the battle route with its key; the key is pasted into OBS
    and may leak, so the wallet routes refuse it."""
    await setup_room(server.runtime, ROOM, CREATOR)
    key = await overlay_key(http, issuer)
    bearer = {"Authorization": "Bearer " + key}
    r = await http.get(f"/api/rooms/{ROOM}/battle", headers=bearer)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")  # read, and no battle yet
    for path in ["/api/me/balance", "/api/me/earnings", "/api/me/transactions"]:
        r = await http.get(path, headers=bearer)
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized"), (path, r.text)
    await http.post(f"/api/rooms/{ROOM}/overlay-key/rotate", headers=auth(issuer))
    r = await http.get(f"/api/rooms/{ROOM}/battle", headers=bearer)
    assert (r.status_code, r.json()["code"]) == (401, "overlay_key_invalid")


@pytest.mark.both_modes  # on a cluster too: scripts SPUBLISH, processes SSUBSCRIBE
async def test_a_rotation_on_one_server_ends_the_old_keys_sessions_on_another(
    config: Config, redis: object, pool: object, issuer: TokenIssuer
) -> None:
    # Watchers that look at revocations only every 5 minutes: the control message does it.
    slow = with_config(config, heartbeat_s=600, idle_timeout_s=1800)
    async with inprocess_server(slow) as one, inprocess_server(slow) as two:
        await setup_room(one.runtime, ROOM, CREATOR)
        async with httpx.AsyncClient(base_url=one.base_url) as http:
            old = await overlay_key(http, issuer)
            there = await open_client(two.ws_url, old)
            try:
                await there.join(ROOM)
                r = await http.post(f"/api/rooms/{ROOM}/overlay-key/rotate",
                                    headers=auth(issuer))
                assert r.status_code == 200, r.text
                assert await there.wait_closed() == CloseCode.OVERLAY_KEY_INVALID
            finally:
                await there.close()
        fresh = await open_client(two.ws_url, r.json()["key"])
        try:
            await fresh.join(ROOM)
        finally:
            await fresh.close()


def test_a_key_names_its_room_and_its_sessions_by_a_digest() -> None:
    key = overlay_keys.new_key("a.b~c")
    assert overlay_keys.parse(key) == "a.b~c"
    assert key not in overlay_keys.session_id(key)
    assert overlay_keys.session_id(key).startswith("ok1:")
    assert overlay_keys.session_id(key) != overlay_keys.session_id(overlay_keys.new_key("a.b~c"))
    for bad in ["", "ok1.", "ok2." + key[4:], key + " ", key.replace("a.b~c", "a b"),
                "ok1." + "x" * 31 + ".room"]:
        assert overlay_keys.parse(bad) is None, bad
