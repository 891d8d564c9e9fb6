"""Resume: a client that reconnects with `after=N` gets exactly what it missed, then live events;
a resume point older than the history is a `gap` with a fresh snapshot."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis.asyncio import Redis

from protocol import Ack, SendGift
from server.auth import TokenIssuer
from server.config import Config
from tests.hub.support import Client, grant, open_client, setup_room
from tests.support.servers import RunningServer, inprocess_server

# The same tests on single Redis and on the local Redis Cluster.
pytestmark = pytest.mark.both_modes


async def _gift(sender: Client, room: str, tx: str) -> None:
    await sender.send(SendGift(id=tx, room=room, gift="rose", count=1, tx=tx))
    assert isinstance(await sender.reply(tx), Ack)


async def test_a_client_that_resumes_gets_exactly_what_it_missed(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r")
    await grant(rt, "s", 1000)
    sender = await open_client(server.ws_url, issuer.mint("s", "viewer"))
    await sender.join("r")
    viewer = await open_client(server.ws_url, issuer.mint("v", "viewer"))
    await viewer.join("r")
    for i in range(3):
        await _gift(sender, "r", f"a{i}")
    seen = await viewer.wait_events(3)
    last = seen[-1].seq
    await viewer.close()
    for i in range(5):
        await _gift(sender, "r", f"b{i}")
    back = await open_client(server.ws_url, issuer.mint("v", "viewer"), binary=False)
    try:
        joined = await back.join("r", after=last)
        assert joined.resume == "ok" and joined.seq == last + 5
        await _gift(sender, "r", "live")
        events = await back.wait_events(6)
        assert [e.seq for e in events] == list(range(last + 1, last + 7))
        assert len({e.eid for e in events}) == 6
        assert [e.seq for e in await sender.wait_events(9)] == list(range(1, 10))
    finally:
        await back.close()
        await sender.close()


async def test_resume_at_the_current_seq_replays_nothing(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r")
    await grant(rt, "s", 10)
    sender = await open_client(server.ws_url, issuer.mint("s", "viewer"))
    try:
        await sender.join("r")
        await _gift(sender, "r", "t1")
        other = await open_client(server.ws_url, issuer.mint("o", "viewer"))
        joined = await other.join("r", after=1)
        assert joined.resume == "ok" and joined.seq == 1
        await _gift(sender, "r", "t2")
        assert [e.seq for e in await other.wait_events(1)] == [2]
        await other.close()
    finally:
        await sender.close()


@pytest.fixture
async def short_history(
    config: Config, redis: Redis, pool: asyncpg.Pool
) -> AsyncIterator[RunningServer]:
    async with inprocess_server(dataclasses.replace(config, history_maxlen=3)) as running:
        yield running


async def test_a_resume_point_older_than_the_history_is_a_gap_with_a_fresh_snapshot(
    short_history: RunningServer, issuer: TokenIssuer
) -> None:
    server = short_history
    rt = server.runtime
    await setup_room(rt, "r")
    await grant(rt, "s", 100)
    sender = await open_client(server.ws_url, issuer.mint("s", "viewer"))
    try:
        await sender.join("r")
        for i in range(8):
            await _gift(sender, "r", f"t{i}")
        late = await open_client(server.ws_url, issuer.mint("late", "viewer"))
        joined = await late.join("r", after=1)
        assert joined.resume == "gap" and joined.seq == 8
        assert joined.top[0].user == "s" and joined.top[0].coins == 8
        ok = await open_client(server.ws_url, issuer.mint("ok", "viewer"))
        assert (await ok.join("r", after=6)).resume == "ok"
        await _gift(sender, "r", "after")
        assert [e.seq for e in await late.wait_events(1)] == [9]
        assert [e.seq for e in await ok.wait_events(3)] == [7, 8, 9]
        # A seq the room never reached is not trusted either.
        future = await open_client(server.ws_url, issuer.mint("f", "viewer"))
        assert (await future.join("r", after=100)).resume == "gap"
        for c in (late, ok, future):
            await c.close()
    finally:
        await sender.close()
