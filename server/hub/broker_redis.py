"""Redis pub/sub broker: one dedicated connection per process, with its own connection policy.

Why not redis-py's PubSub: its connection inherits the client's socket timeout (an idle room then
looks like a dead connection, design.md 4a), and its silent internal re-subscribe hides the moment
messages were lost. This backend speaks RESP over one asyncio stream (hiredis parses), so:
- no read timeout at all; liveness is our own PING every `ping_interval_s`: if nothing at all
  arrived for three intervals after a PING, the connection is dead and is dropped;
- payloads stay `bytes` (hiredis returns bulk strings as bytes);
- a subscribe waits for Redis's confirmation, counted per channel, so SUBSCRIBE/UNSUBSCRIBE/
  SUBSCRIBE of one channel in flight cannot confirm early;
- after any reconnect every wanted channel is re-subscribed, and once all are confirmed
  `on_resubscribed` runs (the hub then recovers missed events from room history).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import hiredis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from server.hub.broker import Broker

log = logging.getLogger("giftwire.broker")

_SUBSCRIBE_CHUNK = 500
_RECONNECT_MIN_S = 0.05
_RECONNECT_MAX_S = 2.0
SILENT_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class _Endpoint:
    host: str | None
    port: int
    path: str | None
    username: str | None
    password: str | None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> _Endpoint:
        u = urlparse(url)
        user = unquote(u.username) if u.username else None
        password = unquote(u.password) if u.password else None
        if u.scheme == "unix":
            return cls(None, 0, u.path, user, password)
        if u.scheme not in ("redis", "rediss"):
            raise ValueError(f"the pub/sub broker supports redis://, rediss:// and unix:// URLs, "
                             f"not {u.scheme}://")
        return cls(u.hostname or "127.0.0.1", u.port or 6379, None, user, password,
                   tls=u.scheme == "rediss")


def _command(*args: bytes | str | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


class RedisBroker(Broker):
    # The pub/sub dialect: classic here, sharded (SSUBSCRIBE...) in server/hub/broker_sharded.py.
    SUBSCRIBE = "SUBSCRIBE"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    MESSAGE = b"message"
    SUBSCRIBED = b"subscribe"
    UNSUBSCRIBED = b"unsubscribe"

    def __init__(
        self,
        url: str,
        publisher: Redis | RedisCluster,
        *,
        name: str = "giftwire-pubsub",
        ping_interval_s: float = 5.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        super().__init__()
        self._endpoint = _Endpoint.parse(url)
        self._publisher = publisher
        self._name = name
        self._ping_interval_s = ping_interval_s
        self._connect_timeout_s = connect_timeout_s
        # channel -> future resolved once Redis confirmed the subscription on this connection.
        self._wanted: dict[str, asyncio.Future[None]] = {}
        # SUBSCRIBE replies still outstanding per channel, on the current connection.
        self._pending: dict[str, int] = {}
        # UNSUBSCRIBE replies still outstanding per channel: any other unsubscribe reply was
        # pushed by the server (sharded pub/sub: the channel's slot moved away).
        self._unsubscribing: dict[str, int] = {}
        # Channels still to be confirmed after a reconnect; None when not resynchronising.
        self._resync: set[str] | None = None
        # The first connection's subscriptions (a shard link starts with channels wanted): once
        # confirmed nothing was missed, so no on_resubscribed and no recovery.
        self._resync_initial = False
        self._writer: asyncio.StreamWriter | None = None
        self._last_rx = 0.0
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._first_connect: asyncio.Future[None] | None = None
        self._parser = hiredis.Reader()
        # Set whenever a pong or a new generation arrives; waiters re-check their predicate.
        self._progress = asyncio.Event()
        # Public counters: tests and metrics watch these.
        self.generation = 0  # +1 each time a connection has every wanted channel confirmed
        self.reconnects = 0
        self.pings = 0
        self.client_id: int | None = None

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._wanted)

    @property
    def connected(self) -> bool:
        return self._writer is not None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._first_connect = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.create_task(self._run(), name="broker-reader"),
            asyncio.create_task(self._pinger(), name="broker-pinger"),
        ]
        await asyncio.wait_for(asyncio.shield(self._first_connect), self._connect_timeout_s * 4)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._close_writer()
        for fut in self._wanted.values():
            if not fut.done():
                fut.set_exception(ConnectionError("broker stopped"))
                fut.exception()  # retrieved: nobody may be waiting any more
        self._wanted.clear()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds, re-checked after every pong and resubscription (tests
        watch `generation` and `pings` this way instead of sleeping)."""
        while not predicate():
            self._progress.clear()
            await self._progress.wait()

    # -- pub/sub --------------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        fut = self._wanted.get(channel)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._wanted[channel] = fut
            if self._writer is not None:
                self._send_subscribe([channel])
            # Not connected: the reconnect subscribes every wanted channel.
        await asyncio.shield(fut)

    def unsubscribe(self, channel: str) -> None:
        fut = self._wanted.pop(channel, None)
        if fut is None:
            return
        if not fut.done():
            fut.set_exception(ConnectionError(f"{channel} was unsubscribed"))
            fut.exception()
        if self._resync is not None:
            self._resync.discard(channel)
            self._maybe_resynced()
        if self._writer is not None:
            self._unsubscribing[channel] = self._unsubscribing.get(channel, 0) + 1
            self._writer.write(_command(self.UNSUBSCRIBE, channel))

    async def publish(self, channel: str, data: bytes) -> int:
        if not isinstance(data, bytes):
            raise TypeError("the broker carries bytes only")
        return int(await self._publisher.publish(channel, data))

    # -- connection -----------------------------------------------------------------------------

    def _send_subscribe(self, channels: Sequence[str]) -> None:
        assert self._writer is not None
        for i in range(0, len(channels), _SUBSCRIBE_CHUNK):
            chunk = channels[i : i + _SUBSCRIBE_CHUNK]
            for ch in chunk:
                self._pending[ch] = self._pending.get(ch, 0) + 1
            self._writer.write(_command(self.SUBSCRIBE, *chunk))

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ep = self._endpoint
        if ep.path is not None:
            opening = asyncio.open_unix_connection(ep.path)
        else:
            # rediss://: TLS with the system's trust store and hostname checking.
            opening = asyncio.open_connection(ep.host, ep.port, ssl=True if ep.tls else None)
        reader, writer = await asyncio.wait_for(opening, self._connect_timeout_s)
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        parser = hiredis.Reader()

        async def request(*args: bytes | str | int) -> object:
            writer.write(_command(*args))
            while True:
                reply = parser.gets()
                if reply is not False:
                    if isinstance(reply, hiredis.ReplyError):
                        raise ConnectionError(f"redis refused {args[0]!r}: {reply}")
                    return reply
                data = await asyncio.wait_for(reader.read(65536), self._connect_timeout_s)
                if not data:
                    raise ConnectionError("connection closed during handshake")
                parser.feed(data)

        try:
            if ep.password is not None:
                if ep.username:
                    await request("AUTH", ep.username, ep.password)
                else:
                    await request("AUTH", ep.password)
            await request("CLIENT", "SETNAME", self._name)
            client_id = await request("CLIENT", "ID")
        except BaseException:
            writer.close()
            raise
        self.client_id = int(client_id) if isinstance(client_id, int) else None
        self._parser = parser
        return reader, writer

    async def _run(self) -> None:
        backoff = _RECONNECT_MIN_S
        first = True
        while not self._stopping:
            try:
                reader, writer = await self._connect()
                self._writer = writer
                self._pending = {}
                self._unsubscribing = {}
                self._last_rx = time.monotonic()
                channels = list(self._wanted)
                self._resync, self._resync_initial = set(channels), first
                if channels:
                    self._send_subscribe(channels)
                self._maybe_resynced()
                if first and self._first_connect is not None:
                    self._first_connect.set_result(None)
                first = False
                backoff = _RECONNECT_MIN_S
                await self._read_loop(reader)
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionError, TimeoutError, hiredis.ProtocolError) as exc:
                log.warning(
                    "pub/sub connection lost (%s: %s); reconnecting",
                    type(exc).__name__, exc)
                self._connection_lost()
            finally:
                self._close_writer()
            if self._stopping:
                return
            self.reconnects += 1
            await asyncio.sleep(backoff)  # reconnect backoff, not synchronisation
            backoff = min(backoff * 2, _RECONNECT_MAX_S)

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        self._resync = None
        if writer is not None:
            writer.transport.abort()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        parser = self._parser
        while True:
            data = await reader.read(1 << 16)
            if not data:
                raise ConnectionError("closed by the server")
            self._last_rx = time.monotonic()
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                self._handle(reply)

    def _handle(self, reply: object) -> None:
        if not isinstance(reply, list) or not reply:
            if isinstance(reply, hiredis.ReplyError):
                self._error_reply(str(reply))
            return  # +PONG outside subscribed mode, or nothing we asked for
        kind = reply[0]
        if kind == self.MESSAGE:
            channel = reply[1].decode(errors="replace")
            try:
                self.on_message(channel, reply[2])
            except Exception:
                log.exception("dropped a message on %s: its handler failed", channel)
        elif kind == self.SUBSCRIBED:
            self._confirmed(reply[1].decode(errors="replace"))
        elif kind == self.UNSUBSCRIBED and isinstance(reply[1], bytes):
            channel = reply[1].decode(errors="replace")
            left = self._unsubscribing.get(channel, 0) - 1
            if left > 0:
                self._unsubscribing[channel] = left
            elif left == 0:
                del self._unsubscribing[channel]
            else:
                self._dropped(channel)
        elif kind == b"pong":
            self.pings += 1
            self._progress.set()

    def _error_reply(self, message: str) -> None:
        log.error("pub/sub error reply: %s", message)

    def _connection_lost(self) -> None:
        """Called after each lost (or refused) connection, before the reconnect backoff."""

    def _dropped(self, channel: str) -> None:
        """The server unsubscribed a channel we did not ask to leave (a sharded channel whose
        slot moved to another node). Only the sharded broker gets these."""
        log.warning("pub/sub: the server unsubscribed %s", channel)

    def _confirmed(self, channel: str) -> None:
        left = self._pending.get(channel, 0) - 1
        if left > 0:
            self._pending[channel] = left
            return
        self._pending.pop(channel, None)
        fut = self._wanted.get(channel)
        if fut is None:
            return  # unsubscribed meanwhile; its UNSUBSCRIBE is on its way
        if not fut.done():
            fut.set_result(None)
        if self._resync is not None:
            self._resync.discard(channel)
            self._maybe_resynced()

    def _maybe_resynced(self) -> None:
        if self._resync is None or self._resync:
            return
        self._resync = None
        self.generation += 1
        self._progress.set()
        if not self._resync_initial:
            log.info("pub/sub re-subscribed %d channel(s)", len(self._wanted))
            try:
                self.on_resubscribed()
            except Exception:
                log.exception("on_resubscribed failed")

    async def _pinger(self) -> None:
        # A PING every interval; the connection is dead when nothing at all (pong or message)
        # arrived for SILENT_INTERVALS intervals since the oldest unanswered PING: one late pong
        # on a busy machine is not a dead connection.
        first_unanswered = 0.0
        limit = SILENT_INTERVALS * self._ping_interval_s
        while True:
            await asyncio.sleep(self._ping_interval_s)  # heartbeat period
            writer = self._writer
            if writer is None:
                first_unanswered = 0.0
                continue
            now = time.monotonic()
            if first_unanswered and self._last_rx >= first_unanswered:
                first_unanswered = 0.0  # something arrived since: alive
            if first_unanswered and now - first_unanswered >= limit:
                log.warning("pub/sub silent for %.1fs; dropping it", now - first_unanswered)
                with contextlib.suppress(Exception):
                    writer.transport.abort()
                first_unanswered = 0.0
                continue
            if not first_unanswered:
                first_unanswered = now
            writer.write(_command("PING"))
