"""The Redis pub/sub broker against a real Redis: bytes in, same bytes out; confirmed subscribes;
re-subscription by itself after its connection is killed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from server.config import Config
from server.hub.broker_redis import RedisBroker


@pytest.fixture
async def broker(config: Config, redis: Redis) -> AsyncIterator[RedisBroker]:
    assert config.redis_url
    b = RedisBroker(
        config.redis_url, redis, name=f"{config.key_prefix}pubsub", ping_interval_s=0.1
    )
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


class Inbox:
    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, channel: str, data: bytes) -> None:
        self.items.append((channel, data))
        self._changed.set()

    async def wait_for(self, n: int) -> list[tuple[str, bytes]]:
        while len(self.items) < n:
            self._changed.clear()
            await self._changed.wait()
        return self.items


async def test_every_byte_value_crosses_the_broker_unchanged(
    broker: RedisBroker, config: Config
) -> None:
    inbox = Inbox()
    broker.on_message = inbox
    channel = f"{config.key_prefix}bytes"
    await broker.subscribe(channel)
    payloads = [
        bytes(range(256)),
        bytes(range(255, -1, -1)) * 3,
        b"\x00",
        b"\xff\xfe\x80\xc0\xc1",  # never valid UTF-8
        b"\r\n$3\r\n*1\r\n",  # looks like RESP framing
        b"",
    ] + [bytes([i]) for i in range(256)]
    for p in payloads:
        assert await broker.publish(channel, p) == 1
    got = await inbox.wait_for(len(payloads))
    assert got == [(channel, p) for p in payloads]
    assert all(type(data) is bytes for _, data in got)


async def test_publish_refuses_str(broker: RedisBroker, config: Config) -> None:
    with pytest.raises(TypeError):
        await broker.publish(f"{config.key_prefix}x", "text")  # type: ignore[arg-type]


async def test_a_bad_handler_does_not_kill_the_listener(
    broker: RedisBroker, config: Config
) -> None:
    inbox = Inbox()

    def handler(channel: str, data: bytes) -> None:
        if data == b"boom":
            raise ValueError("bad payload")
        inbox(channel, data)

    broker.on_message = handler
    channel = f"{config.key_prefix}c"
    await broker.subscribe(channel)
    await broker.publish(channel, b"boom")
    await broker.publish(channel, b"after")
    assert await inbox.wait_for(1) == [(channel, b"after")]


async def test_subscribe_returns_after_confirmation_under_churn(
    broker: RedisBroker, config: Config, redis: Redis
) -> None:
    """Subscribe/unsubscribe/subscribe the same channel in flight: once subscribe returns, a
    message published right away is always received."""
    inbox = Inbox()
    broker.on_message = inbox
    channel = f"{config.key_prefix}churn"
    for i in range(50):
        await broker.subscribe(channel)
        broker.unsubscribe(channel)
        await broker.subscribe(channel)
        assert await redis.publish(channel, b"%d" % i) == 1
        await inbox.wait_for(i + 1)
    assert [d for _, d in inbox.items] == [b"%d" % i for i in range(50)]


async def test_resubscribes_after_client_kill_and_survives_idle(
    broker: RedisBroker, config: Config, redis: Redis
) -> None:
    inbox = Inbox()
    broker.on_message = inbox
    resubscribed = asyncio.Event()
    broker.on_resubscribed = resubscribed.set
    channels = [f"{config.key_prefix}room{i}" for i in range(20)]
    for ch in channels:
        await broker.subscribe(ch)
    generation = broker.generation
    # Scoped to our connection: other suites may share this Redis.
    killed = await redis.execute_command("CLIENT", "KILL", "ID", broker.client_id, "TYPE", "pubsub")
    assert killed == 1
    await resubscribed.wait()
    assert broker.generation == generation + 1
    assert broker.reconnects >= 1
    # Idle across many of its own health-check intervals: still the same live connection.
    pings = broker.pings
    await broker.wait_until(lambda: broker.pings >= pings + 5)
    assert broker.generation == generation + 1
    for ch in channels:
        assert await redis.publish(ch, ch.encode()) == 1
    got = await inbox.wait_for(len(channels))
    assert sorted(got) == sorted((ch, ch.encode()) for ch in channels)


@dataclass
class _Link:
    writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]
    silent: bool = False


class BlackholeProxy:
    """A TCP proxy to Redis whose existing connections can go silent without closing, like a
    peer behind a dead NAT entry: nothing is refused, nothing arrives. New connections work."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self._links: list[_Link] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        link = _Link((writer, up_writer))
        self._links.append(link)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if not link.silent:
                    dst.write(data)

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer),
                             return_exceptions=True)

    def go_silent(self) -> None:
        for link in self._links:
            link.silent = True

    async def stop(self) -> None:
        for link in self._links:
            for w in link.writers:
                w.transport.abort()
        if self.server is not None:
            self.server.close()


async def test_a_silent_connection_is_detected_by_its_own_pings_and_replaced(
    config: Config, redis: Redis
) -> None:
    from urllib.parse import urlparse

    assert config.redis_url
    u = urlparse(config.redis_url)
    proxy = BlackholeProxy(u.hostname or "127.0.0.1", u.port or 6379)
    port = await proxy.start()
    b = RedisBroker(f"redis://127.0.0.1:{port}/0", redis, name=f"{config.key_prefix}ps",
                    ping_interval_s=0.1)
    inbox = Inbox()
    b.on_message = inbox
    await b.start()
    try:
        channel = f"{config.key_prefix}silent"
        await b.subscribe(channel)
        generation = b.generation
        proxy.go_silent()  # the old connection hears nothing more, and is never closed
        await b.wait_until(lambda: b.generation > generation)
        assert b.reconnects == 1
        # (>= 1: the proxy still holds the old upstream connection open, as a dead NAT would.)
        assert await redis.publish(channel, b"through the new connection") >= 1
        assert await inbox.wait_for(1) == [(channel, b"through the new connection")]
    finally:
        await b.stop()
        await proxy.stop()
