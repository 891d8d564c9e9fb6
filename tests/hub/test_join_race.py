"""The join race at hub level, with real Redis: the subscription is held back on purpose while
events are published, and a join must still neither miss nor repeat any event after its snapshot.
(With the join reading its snapshot before the subscription is confirmed, this test fails.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgpack
import pytest
from redis.asyncio import Redis

from protocol import MsgpackCodec
from server.config import Config
from server.edge.writer import FlushScheduler, Writer
from server.hub.broker_redis import RedisBroker
from server.hub.combos import ComboSweeper
from server.hub.hub import Hub
from server.hub.roomstate import RoomState
from server.metrics import Metrics
from server.money import streams
from server.runtime import Runtime
from server.storage.scripts import ScriptRunner


class GatedBroker(RedisBroker):
    """A real Redis broker whose SUBSCRIBE is only sent once `gate` opens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()

    async def subscribe(self, channel: str) -> None:
        await self.gate.wait()
        await super().subscribe(channel)


class Member:
    """A hub member whose writer delivers into a list instead of a socket."""

    def __init__(self, i: int, scheduler: FlushScheduler) -> None:
        self.conn_id = f"m{i}"
        self.binary = True
        self.counted = True
        self.frames: list[bytes] = []
        self.arrived = asyncio.Event()
        codec = MsgpackCodec()

        def frame(items: Sequence[bytes]) -> bytes:
            return codec.frame(items)

        self.writer: Writer[bytes] = Writer(self._send, frame, scheduler, max_bytes=1 << 20,
                                            on_overflow=lambda: None)
        self.task = asyncio.create_task(self.writer.run())

    async def _send(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.arrived.set()

    def kill(self, code: int, reason: str) -> None:
        raise AssertionError(f"killed: {code} {reason}")

    def messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for f in self.frames:
            value = msgpack.unpackb(f)
            out.extend(value if isinstance(value, list) else [value])
        return out


@pytest.fixture
async def hub_parts(
    config: Config, runtime: Runtime, redis: Redis
) -> AsyncIterator[tuple[Hub, GatedBroker, RoomState]]:
    assert config.redis_url
    runner = ScriptRunner(runtime.redis)
    await runner.load()
    runner.start()
    state = RoomState(runtime.keys, runner, runtime.redis, history_maxlen=1000,
                      history_max_age_s=3600, combo_timeout_ms=3000, presence_ttl_s=30)
    broker = GatedBroker(config.redis_url, redis, name=f"{config.key_prefix}gated")
    await broker.start()
    hub = Hub(broker, state, Metrics(), ComboSweeper(state))
    try:
        yield hub, broker, state
    finally:
        await hub.stop()
        await broker.stop()
        await runner.stop()


async def test_joiners_never_miss_events_published_before_their_subscription_is_live(
    hub_parts: tuple[Hub, GatedBroker, RoomState], runtime: Runtime
) -> None:
    hub, broker, state = hub_parts
    await streams.go_live(runtime, "race", "creator1")
    scheduler = FlushScheduler(0.001)
    members = [Member(i, scheduler) for i in range(50)]
    joins = asyncio.gather(*(hub.join(m, "race", None, f"j{i}") for i, m in enumerate(members)))
    published = []
    for i in range(10):  # while the subscription is held back
        published.append(await state.publish_gift("race", sender="s", name="S", tx=f"t{i}",
                                                   gift="rose", count=1, coins=1))
    broker.gate.set()
    await joins
    last = await state.publish_gift("race", sender="s", name="S", tx="last", gift="rose",
                                    count=1, coins=1)
    assert last == 11
    for m in members:
        while not any(msg.get("seq") == last and msg["type"] == "gift" for msg in m.messages()):
            m.arrived.clear()
            await m.arrived.wait()
        msgs = m.messages()
        joined = next(x for x in msgs if x["type"] == "joined")
        seqs = [x["seq"] for x in msgs if x["type"] == "gift"]
        assert seqs == list(range(joined["seq"] + 1, last + 1))
    for m in members:
        await hub.leave(m, "race")
        m.writer.close()
        await m.task
