"""Combos (10 debits, progress, one settled event), overlays, rate limits, bad frames."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from protocol import (
    Ack,
    ComboEnd,
    ComboProgress,
    ErrorReply,
    GiftEvent,
    Join,
    Ping,
    Pong,
    SendGift,
)
from server.auth import TokenIssuer
from server.config import Config
from tests.hub.support import Client, grant, open_client, setup_room
from tests.support.servers import RunningServer, inprocess_server

# The same tests on single Redis and on the local Redis Cluster.
pytestmark = pytest.mark.both_modes


async def _combo_clicks(sender: Client, room: str, combo: str, n: int) -> list[Ack]:
    acks = []
    for i in range(n):
        rid = f"{combo}-{i}"
        await sender.send(SendGift(id=rid, room=room, gift="rose", count=1, tx=rid, combo=combo))
        ack = await sender.reply(rid)
        assert isinstance(ack, Ack), ack
        acks.append(ack)
    return acks


async def test_a_combo_of_ten_roses_is_ten_debits_progress_and_one_settled_event(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r")
    await grant(rt, "fan", 100)
    sender = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    watcher = await open_client(server.ws_url, issuer.mint("w", "viewer"))
    try:
        await sender.join("r")
        await watcher.join("r")
        acks = await _combo_clicks(sender, "r", "c1", 10)
        assert [a.balance for a in acks] == list(range(99, 89, -1))  # ten separate debits
        await sender.send(ComboEnd(id="end", room="r", combo="c1"))
        assert isinstance(await sender.reply("end"), Ack)
        events = await watcher.wait_events(11)
        progress = [e for e in events if isinstance(e, ComboProgress)]
        settled = [e for e in events if isinstance(e, GiftEvent)]
        assert [p.count for p in progress] == list(range(1, 11))
        assert len(settled) == 1
        assert (settled[0].combo, settled[0].count, settled[0].coins) == ("c1", 10, 10)
        assert [e.seq for e in events] == list(range(1, 12))
        # Ending it again: it has settled, so there is nothing to end.
        await sender.send(ComboEnd(id="again", room="r", combo="c1"))
        err = await sender.reply("again")
        assert isinstance(err, ErrorReply) and err.code == "combo_not_found"
        assert await rt.components["wallet"].balance("fan") == 90
    finally:
        await sender.close()
        await watcher.close()


@pytest.fixture
async def quick_combos(
    config: Config, redis: Redis, pool: asyncpg.Pool
) -> AsyncIterator[RunningServer]:
    async with inprocess_server(dataclasses.replace(config, combo_timeout_ms=300)) as running:
        yield running


async def test_a_combo_settles_by_itself_after_the_timeout_exactly_once(
    quick_combos: RunningServer, issuer: TokenIssuer
) -> None:
    server = quick_combos
    rt = server.runtime
    await setup_room(rt, "r")
    await grant(rt, "fan", 100)
    sender = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    try:
        await sender.join("r")
        await _combo_clicks(sender, "r", "c2", 4)
        events = await sender.wait_events(5)
        settled = events[-1]
        assert isinstance(settled, GiftEvent) and settled.combo == "c2" and settled.count == 4
        # Racing sweeps (this process's ticker and explicit ones) settle nothing twice.
        state = rt.components["realtime"].state
        assert sum(await asyncio.gather(*(state.settle_combos("r") for _ in range(20)))) == 0
        await sender.send(ComboEnd(id="late", room="r", combo="c2"))
        assert (await sender.reply("late")).code == "combo_not_found"
        # A click for the settled combo is refused before anything is spent.
        balance = await rt.components["wallet"].balance("fan")
        await sender.send(SendGift(id="click", room="r", gift="rose", count=1, tx="late-click",
                                   combo="c2"))
        err = await sender.reply("click")
        assert isinstance(err, ErrorReply) and err.code == "combo_not_found"
        assert await rt.components["wallet"].balance("fan") == balance
        assert len([e for e in sender.events() if isinstance(e, GiftEvent)]) == 1
    finally:
        await sender.close()


async def test_an_overlay_joins_only_its_room_and_cannot_send(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "mine")
    await setup_room(rt, "other", creator="c2")
    overlay = await open_client(server.ws_url, issuer.mint("c1", "overlay", room="mine"),
                                query_token=True)
    try:
        assert (await overlay.join("mine")).room == "mine"
        await overlay.send(SendGift(id="x", room="mine", gift="rose", count=1, tx="t"))
        err = await overlay.reply("x")
        assert isinstance(err, ErrorReply) and err.code == "forbidden"
        await overlay.send(Join(id="j", room="other"))
        err = await overlay.reply("j")
        assert isinstance(err, ErrorReply) and err.code == "forbidden"
        assert rt.components["realtime"].hub.rooms.get("other") is None
    finally:
        await overlay.close()


async def test_a_flood_is_rate_limited_then_closed_and_others_are_unaffected(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    flooder = await open_client(server.ws_url, issuer.mint("f", "viewer"))
    calm = await open_client(server.ws_url, issuer.mint("c", "viewer"))
    try:
        burst = server.config.rate_burst
        sent = 0
        with contextlib.suppress(ConnectionClosed):
            while flooder.closed_code is None and sent < burst + 300:
                await flooder.send(Ping(id=f"p{sent}"))
                sent += 1
        code = await flooder.wait_closed()
        assert code == 4009
        replies = [m for m in flooder.messages if isinstance(m, Pong | ErrorReply)]
        limited = [m for m in replies if isinstance(m, ErrorReply)]
        assert limited and all(m.code == "rate_limited" and m.retry_ms for m in limited)
        assert len([m for m in replies if isinstance(m, Pong)]) >= burst
        await calm.send(Ping(id="ok"))
        assert isinstance(await calm.reply("ok"), Pong)
    finally:
        await flooder.close()
        await calm.close()


async def test_bad_frames_get_codes_and_a_stream_of_them_closes_4002(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    client = await open_client(server.ws_url, issuer.mint("b", "viewer"))
    try:
        await client.ws.send(b"\xc1")  # never valid msgpack
        await client.ws.send("text on the binary subprotocol")
        await client.ws.send(b"\x81\xa4type\xa4nope")
        errs = await client.wait(lambda ms: [m for m in ms if isinstance(m, ErrorReply)][2:] and
                                 [m for m in ms if isinstance(m, ErrorReply)])
        assert [e.code for e in errs] == ["malformed_frame", "wrong_frame_kind", "unknown_type"]
        for _ in range(10):
            await client.ws.send(b"\xc1")
        assert await client.wait_closed() == 4002
    finally:
        await client.close()
