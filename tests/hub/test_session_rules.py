"""Session rules: hello first, tokens, subprotocols, timeouts, room limits, leave."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from protocol import (
    SUBPROTOCOL_MSGPACK,
    ComboEnd,
    ErrorReply,
    GoingAway,
    Hello,
    Join,
    Leave,
    Left,
    Ping,
    SendGift,
    Welcome,
)
from server.auth import TokenIssuer
from server.config import Config
from tests.hub.support import Client, open_client, setup_room
from tests.support.servers import RunningServer, inprocess_server


@pytest.fixture
async def strict(config: Config, redis: Redis, pool: asyncpg.Pool) -> AsyncIterator[RunningServer]:
    # No rate limit here: the idle test keeps one client busy with back-to-back pings.
    cfg = dataclasses.replace(config, hello_timeout_s=1, idle_timeout_s=1,
                              max_rooms_per_connection=2, rate_per_s=1e9, rate_burst=10**9)
    async with inprocess_server(cfg) as running:
        yield running


async def _raw(server: RunningServer) -> Client:
    ws = await connect(server.ws_url, subprotocols=[SUBPROTOCOL_MSGPACK])
    client = Client(ws, SUBPROTOCOL_MSGPACK)
    client.start()
    return client


async def test_no_hello_in_time_closes_4011(strict: RunningServer) -> None:
    client = await _raw(strict)
    assert await client.wait_closed() == 4011


async def test_a_message_before_hello_is_refused_and_closes_4002(strict: RunningServer) -> None:
    client = await _raw(strict)
    await client.send(Ping(id="p"))
    assert await client.wait_closed() == 4002
    (err,) = [m for m in client.messages if isinstance(m, ErrorReply)]
    assert err.code == "hello_required"


async def test_bad_and_expired_tokens_close_with_their_codes(
    strict: RunningServer, issuer: TokenIssuer
) -> None:
    forged = await _raw(strict)
    await forged.send(Hello(id="h", v=1, client="t", token="not-a-token"))
    assert await forged.wait_closed() == 4001
    assert [m.code for m in forged.messages if isinstance(m, ErrorReply)] == ["unauthorized"]
    expired = await _raw(strict)
    await expired.send(Hello(id="h", v=1, client="t", token=issuer.mint("u", "viewer", ttl_s=-5)))
    assert await expired.wait_closed() == 4004


async def test_a_socket_without_our_subprotocol_is_refused(strict: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        await connect(strict.ws_url, subprotocols=["chat"])
    assert info.value.response.status_code == 403


async def test_an_idle_session_closes_4010_and_pings_keep_it_open(
    strict: RunningServer, issuer: TokenIssuer
) -> None:
    idle = await open_client(strict.ws_url, issuer.mint("idle", "viewer"))
    busy = await open_client(strict.ws_url, issuer.mint("busy", "viewer"))
    # The close below follows the number welcome announced (docs/protocol.md, heartbeat).
    welcome = idle.messages[0]
    assert isinstance(welcome, Welcome) and welcome.idle_timeout_s == strict.config.idle_timeout_s
    n = 0
    while idle.closed_code is None:
        n += 1
        await busy.send(Ping(id=f"p{n}"))
        await busy.reply(f"p{n}")
    assert idle.closed_code == 4010
    assert busy.closed_code is None
    await busy.close()


async def test_room_limits_and_leave(strict: RunningServer, issuer: TokenIssuer) -> None:
    rt = strict.runtime
    for room in ("a", "b", "c"):
        await setup_room(rt, room)
    c = await open_client(strict.ws_url, issuer.mint("u", "viewer"))
    try:
        await c.join("a")
        await c.send(Join(id="again", room="a"))
        assert (await c.reply("again")).code == "already_joined"
        await c.join("b")
        await c.send(Join(id="third", room="c"))
        assert (await c.reply("third")).code == "too_many_rooms"
        await c.send(Leave(id="l", room="a"))
        assert isinstance(await c.reply("l"), Left)
        await c.send(Leave(id="l2", room="a"))
        assert (await c.reply("l2")).code == "not_joined"
        await c.send(SendGift(id="g", room="a", gift="rose", count=1, tx="t"))
        assert (await c.reply("g")).code == "not_joined"
        await c.join("c")
        assert strict.runtime.components["realtime"].hub.rooms.get("a") is None
    finally:
        await c.close()


async def test_drain_tells_everyone_then_closes_1001_and_refuses_newcomers(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    await setup_room(server.runtime, "r")
    clients = [await open_client(server.ws_url, issuer.mint(f"u{i}", "viewer")) for i in range(5)]
    for c in clients:
        await c.join("r")
    await server.app.state.drain()
    for c in clients:
        assert await c.wait_closed() == 1001
        away = [m for m in c.messages if isinstance(m, GoingAway)]
        assert len(away) == 1 and away[0].reconnect_ms == server.config.reconnect_hint_ms
    assert server.runtime.draining
    with pytest.raises(InvalidStatus):
        await connect(server.ws_url, subprotocols=[SUBPROTOCOL_MSGPACK])


async def test_an_oversized_frame_is_refused_with_frame_too_large(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    c = await open_client(server.ws_url, issuer.mint("u", "viewer"))
    try:
        await c.ws.send(b"\x81\xa4type\xa4ping" + b"\x00" * 5000)
        err = await c.wait(lambda ms: [m for m in ms if isinstance(m, ErrorReply)])
        assert err[0].code == "frame_too_large"
        await c.send(Ping(id="still"))
        await c.reply("still")
    finally:
        await c.close()


async def test_a_request_whose_backend_fails_is_still_answered(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r")
    # A real Redis failure: the room's combo hash is a string, so the settle script errors.
    await rt.redis.set(rt.keys.room_combos("r"), "not a hash")
    c = await open_client(server.ws_url, issuer.mint("u", "viewer"))
    try:
        await c.send(ComboEnd(id="end", room="r", combo="c1"))
        err = await c.reply("end")
        assert isinstance(err, ErrorReply) and err.code == "unavailable" and err.retry_ms
        await c.send(Ping(id="alive"))
        await c.reply("alive")
    finally:
        await c.close()
