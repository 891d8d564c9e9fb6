"""The sharded pub/sub broker on the real local cluster: channels on every master, bytes intact,
a channel whose slot moves follows it (the server's pushed `sunsubscribe`), and a master killed
and replaced by its replica: every channel re-subscribed there and `on_resubscribed` told."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from server.hub.broker_sharded import ShardedBroker
from server.runtime import redis_client
from server.storage.keys import cluster_slot
from tests.hub.test_broker import Inbox
from tests.support.cluster import LocalCluster


@pytest.fixture
async def publisher(redis_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    client = redis_client(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def broker(publisher: RedisCluster) -> AsyncIterator[ShardedBroker]:
    b = ShardedBroker(publisher, name="gw-test-sharded", ping_interval_s=0.2)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


def _channels(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"s{tag}:{{r:room{i}}}:ch" for i in range(n)]


async def test_rooms_on_every_master_get_their_bytes(
    broker: ShardedBroker, redis_cluster: LocalCluster
) -> None:
    inbox = Inbox()
    broker.on_message = inbox
    channels = _channels(30)
    await asyncio.gather(*(broker.subscribe(ch) for ch in channels))
    assert len({broker.link_of(ch) for ch in channels}) == 3
    payloads = [bytes([i % 256]) * (i + 1) + b"\xff\x00" for i in range(len(channels))]
    for ch, data in zip(channels, payloads, strict=True):
        assert await broker.publish(ch, data) == 1  # one subscriber: this process
    got = await inbox.wait_for(len(channels))
    assert sorted(got) == sorted(zip(channels, payloads, strict=True))
    broker.unsubscribe(channels[0])
    assert await broker.publish(channels[0], b"x") == 0


async def test_a_channel_whose_slot_moves_follows_it(
    broker: ShardedBroker, redis_cluster: LocalCluster
) -> None:
    inbox = Inbox()
    broker.on_message = inbox
    channel = _channels(1)[0]
    slot = cluster_slot(channel)
    await broker.subscribe(channel)
    source = broker.link_of(channel)
    assert source is not None
    target = next(p for p in redis_cluster.masters() if p != source[1])
    generation = broker.generation
    try:
        # The slot changes owner: the source pushes `sunsubscribe` to its subscribers.
        await asyncio.to_thread(redis_cluster.move_slot, slot, source[1], target)
        await broker.wait_until(lambda: broker.generation > generation)
        assert broker.link_of(channel) == ("127.0.0.1", target)
        await broker.publish(channel, b"after the move")
        assert (await inbox.wait_for(1))[-1] == (channel, b"after the move")
    finally:
        await asyncio.to_thread(redis_cluster.move_slot, slot, target, source[1])


async def test_a_killed_master_s_channels_move_to_its_replica(
    broker: ShardedBroker, redis_cluster: LocalCluster
) -> None:
    inbox = Inbox()
    broker.on_message = inbox
    resubscribed = asyncio.Event()
    broker.on_resubscribed = resubscribed.set
    channels = _channels(30)
    await asyncio.gather(*(broker.subscribe(ch) for ch in channels))
    victim = redis_cluster.owner(channels[0])
    on_victim = [ch for ch in channels if redis_cluster.owner(ch) == victim]
    try:
        await asyncio.to_thread(redis_cluster.kill, victim)
        heir = await asyncio.to_thread(redis_cluster.wait_promoted, victim)
        await resubscribed.wait()
        await broker.wait_until(
            lambda: all(broker.link_of(ch) == ("127.0.0.1", heir) for ch in on_victim))
        for ch in channels:
            assert await broker.publish(ch, ch.encode()) == 1
        got = await inbox.wait_for(len(channels))
        assert sorted(got) == sorted((ch, ch.encode()) for ch in channels)
    finally:
        await asyncio.to_thread(redis_cluster.heal)
