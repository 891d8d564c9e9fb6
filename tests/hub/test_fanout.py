"""Fan-out under stress: 1,000 simultaneous joiners of an empty room, a client that stops reading,
a client resuming from further back than its write bound holds, and the pub/sub connection killed
mid-stream."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator

import asyncpg
import msgpack
import pytest
from redis.asyncio import Redis

from server.auth import TokenIssuer
from server.config import Config
from server.runtime import Runtime
from tests.hub.support import Client, open_client, setup_room
from tests.support.servers import RunningServer, inprocess_server


async def _publish(rt: Runtime, room: str, tx: str, sender: str = "s") -> int:
    # The room-event script directly (no wallet): fan-out is what these tests are about.
    seq = await rt.components["realtime"].state.publish_gift(
        room, sender=sender, name=sender, tx=tx, gift="rose", count=1, coins=1
    )
    assert seq is not None
    return int(seq)


async def test_a_thousand_simultaneous_joiners_of_an_empty_room_all_get_the_next_event(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "crowd")
    token = issuer.mint("viewer", "viewer")
    opened: list[Client] = []
    try:
        for _ in range(10):  # connect in waves (accept backlog); join all at once below
            opened += await asyncio.gather(
                *(open_client(server.ws_url, token) for _ in range(100))
            )
        assert rt.components["realtime"].hub.rooms.get("crowd") is None  # empty: no subscription
        joining = asyncio.gather(*(c.join("crowd") for c in opened))
        # Events keep coming while the crowd joins: whatever a joiner's snapshot seq, it must
        # then see every later event, once.
        during = 0
        while not joining.done():
            during += 1
            await _publish(rt, "crowd", f"during{during}")
        joined = await joining
        last = await _publish(rt, "crowd", "after")
        assert last == during + 1
        got = await asyncio.gather(*(c.wait(lambda _, c=c: c.events() and
                                            c.events()[-1].seq == last) for c in opened))
        assert got
        for client, j in zip(opened, joined, strict=True):
            assert [e.seq for e in client.events()] == list(range(j.seq + 1, last + 1))
    finally:
        await asyncio.gather(*(c.close() for c in opened))


@pytest.fixture
async def watched(config: Config, redis: Redis, pool: asyncpg.Pool) -> AsyncIterator[RunningServer]:
    cfg = dataclasses.replace(
        config,
        extra={"pubsub_ping_s": "0.1", "slow_close_timeout_s": "60"},
        writer_max_bytes=64 * 1024,
    )
    async with inprocess_server(cfg) as running:
        yield running


async def test_a_resume_from_further_back_than_the_write_bound_gets_every_event(
    watched: RunningServer, issuer: TokenIssuer
) -> None:
    """An overlay cut off as too slow comes back from its last seq: the replay it is owed can be
    larger than its writer's bound. The replay is paced by what the client reads, so the client
    gets all of it (not a 4008 on every reconnect, for ever), and live events meanwhile follow."""
    server = watched
    rt = server.runtime
    await setup_room(rt, "r")
    history = server.config.history_maxlen
    await asyncio.gather(*(_publish(rt, "r", f"old{i}") for i in range(history)))
    client = await open_client(server.ws_url, issuer.mint("late", "viewer"))
    try:
        joined = await client.join("r", after=0)
        assert joined.resume == "ok"
        for i in range(20):
            await _publish(rt, "r", f"live{i}")
        events = await client.wait_events(history + 20)
        assert [e.seq for e in events] == list(range(1, history + 21))
        replayed = sum(len(client.codec.encode(e)) for e in events[:history])
        assert replayed > server.config.writer_max_bytes  # more than one bound's worth
        assert client.ws.close_code is None
    finally:
        await client.close()


async def test_pubsub_killed_mid_stream_and_idle_recovers_every_event_once(
    watched: RunningServer, issuer: TokenIssuer, redis: Redis
) -> None:
    server = watched
    rt = server.runtime
    broker = rt.components["realtime"].broker
    await setup_room(rt, "r")
    viewers = [await open_client(server.ws_url, issuer.mint(f"v{i}", "viewer")) for i in range(5)]
    try:
        for v in viewers:
            await v.join("r")
        for i in range(5):
            await _publish(rt, "r", f"a{i}")
        generation = broker.generation
        killed = await redis.execute_command(
            "CLIENT", "KILL", "ID", broker.client_id, "TYPE", "pubsub"
        )
        assert killed == 1
        # Published while the hub has no subscription: pub/sub drops these.
        for i in range(5):
            await _publish(rt, "r", f"b{i}")
        await broker.wait_until(lambda: broker.generation > generation)
        # Idle for many of the broker's own health-check intervals: it must stay subscribed.
        pings = broker.pings
        await broker.wait_until(lambda: broker.pings >= pings + 10)
        assert broker.generation == generation + 1
        for i in range(5):
            await _publish(rt, "r", f"c{i}")
        for v in viewers:
            events = await v.wait_events(15)
            assert [e.seq for e in events] == list(range(1, 16))
        sample = rt.metrics.registry.get_sample_value
        assert sample("giftwire_pubsub_resubscribes_total") == 1
        assert (sample("giftwire_hub_recoveries_total") or 0) >= 1
    finally:
        for v in viewers:
            await v.close()


async def test_a_client_that_stops_reading_is_closed_4008_and_others_get_everything(
    watched: RunningServer, issuer: TokenIssuer
) -> None:
    server = watched
    rt = server.runtime
    realtime = rt.components["realtime"]
    await setup_room(rt, "r")
    healthy = await open_client(server.ws_url, issuer.mint("ok", "viewer"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.config.port))
    sock.setblocking(False)
    slow = await open_client(server.ws_url, issuer.mint("slow", "viewer"), sock=sock)
    try:
        await healthy.join("r")
        await slow.join("r")
        (conn,) = [c for c in realtime.connections if c.principal.user == "slow"]
        await slow.stop_reading()  # websockets then stops reading the socket: its queue is full
        sent = 0
        # Socket and transport buffers absorb some first (bounded by the server); publish in
        # rounds until the server gives up on the slow client (its state ends the loop).
        while realtime.hub.rooms["r"] == 2:
            await asyncio.gather(*(_publish(rt, "r", f"t{sent + i}") for i in range(100)))
            sent += 100
            await healthy.wait_events(sent)
            assert sent < 200_000, "the slow client was never disconnected"
        slow.start()  # it may read again: what it finds ends with 4008
        assert conn.writer.overflowed
        assert conn.writer.peak <= server.config.writer_max_bytes
        for i in range(20):
            await _publish(rt, "r", f"after{i}")
        events = await healthy.wait_events(sent + 20)
        assert [e.seq for e in events] == list(range(1, sent + 21))
        assert await slow.wait_closed() == 4008
    finally:
        await healthy.close()
        await slow.close()


async def test_an_event_pub_sub_never_carried_is_recovered_from_history_in_order(
    server: RunningServer, issuer: TokenIssuer, redis: Redis
) -> None:
    rt = server.runtime
    await setup_room(rt, "r")
    viewer = await open_client(server.ws_url, issuer.mint("v", "viewer"))
    try:
        await viewer.join("r")
        await _publish(rt, "r", "first")
        # An event that reached the history but not pub/sub (as if the message were lost).
        seq = await redis.incr(rt.keys.room_seq("r"))
        epoch = (await redis.hget(rt.keys.room_epoch("r"), "id")).decode()
        lost = {"type": "gift", "room": "r", "seq": seq, "epoch": epoch, "eid": f"r-{seq}",
                "sender": "x",
                "name": "X", "gift": "rose", "count": 1, "coins": 1, "ts": 1}
        await redis.xadd(rt.keys.room_history("r"), {"s": seq, "e": msgpack.packb(lost)})
        await _publish(rt, "r", "third")
        events = await viewer.wait_events(3)
        assert [(e.seq, e.sender) for e in events] == [(1, "s"), (2, "x"), (3, "s")]
    finally:
        await viewer.close()
