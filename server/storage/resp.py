"""A lean pipelined Redis connection for the script runner: RESP packed here, parsed by hiredis.

Commands are written the moment they are handed over and their replies are matched first in,
first out (Redis answers one connection's commands in order), so any number of batches is in
flight at once and nobody waits for the previous batch's round trip. Why not redis-py for this:
its command packing, encoder, retry and timeout wrappers cost more Python time per script call
than the call costs Redis (BENCHMARKS.md, spend), and its pipelines hold one connection per
batch until every reply is read.

A lost connection fails every command in flight with `ConnectionError`; the owner reconnects
for the next ones. Replies are handed over raw: error replies are `hiredis.ReplyError` values.
The endpoint (host or unix socket, db, AUTH user and password, TLS) is the redis-py client's;
TLS uses the system trust store with hostname checking (redis-py's `ssl_*` options are not read).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ResponseError

Arg = bytes | str | int | float


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(bulk(arg))
    return b"".join(out)


def bulk(arg: Arg) -> bytes:
    if isinstance(arg, str):
        raw = arg.encode()
    elif isinstance(arg, bytes):
        raw = arg
    elif isinstance(arg, bool) or not isinstance(arg, int | float):
        # bool, None, objects: refused (as redis-py does) rather than guessed at
        raise TypeError(f"cannot send {type(arg).__name__} to Redis: {arg!r}")
    elif isinstance(arg, int):
        raw = b"%d" % arg
    else:
        raw = repr(arg).encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect, taken from a redis-py client so both reach the same server."""

    host: str | None
    port: int
    path: str | None
    username: str | None
    password: str | None
    db: int
    tls: bool

    @classmethod
    def of(cls, redis: Redis) -> Endpoint:
        pool = redis.connection_pool
        kw: dict[str, Any] = pool.connection_kwargs
        unix = issubclass(pool.connection_class, UnixDomainSocketConnection)
        return cls(
            host=None if unix else str(kw.get("host") or "127.0.0.1"),
            port=int(kw.get("port") or 6379),
            path=str(kw["path"]) if unix else None,
            username=kw.get("username"),
            password=kw.get("password"),
            db=int(kw.get("db") or 0),
            tls=issubclass(pool.connection_class, SSLConnection),
        )


# (item, reply, seconds since its batch was written)
OnReply = Callable[[Any, Any, float], None]
OnLost = Callable[[Any, Exception], None]


class RespConnection(asyncio.Protocol):
    """One Redis connection; `send` writes a batch and queues its items for their replies."""

    def __init__(self, on_reply: OnReply, on_lost: OnLost) -> None:
        self._on_reply = on_reply
        self._on_lost = on_lost
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        # (item, sent at) per command in flight, oldest first.
        self._fifo: deque[tuple[Any, float]] = deque()
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, ep: Endpoint, on_reply: OnReply, on_lost: OnLost, *, name: str,
                   timeout_s: float) -> RespConnection:
        loop = asyncio.get_running_loop()

        def factory() -> RespConnection:
            return cls(on_reply, on_lost)

        if ep.path is not None:
            opening = loop.create_unix_connection(factory, ep.path)
        else:
            context = ssl.create_default_context() if ep.tls else None
            opening = loop.create_connection(factory, ep.host, ep.port, ssl=context)
        _, conn = await asyncio.wait_for(opening, timeout_s)
        try:
            await asyncio.wait_for(conn._handshake(ep, name), timeout_s)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _handshake(self, ep: Endpoint, name: str) -> None:
        commands: list[list[Arg]] = []
        if ep.password is not None:
            commands.append(["AUTH", ep.username, ep.password] if ep.username else
                            ["AUTH", ep.password])
        if ep.db:
            commands.append(["SELECT", ep.db])
        commands.append(["CLIENT", "SETNAME", name])
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in commands]
        on_reply, self._on_reply = self._on_reply, _settle
        on_lost, self._on_lost = self._on_lost, _lost
        try:
            self.send(b"".join(pack(c) for c in commands), waiters)
            for command, waiter in zip(commands, waiters, strict=True):
                reply = await waiter
                if isinstance(reply, hiredis.ReplyError):
                    raise ConnectionError(f"redis refused {command[0]}: {reply}")
        finally:
            self._on_reply, self._on_lost = on_reply, on_lost

    # -- use ------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None

    @property
    def in_flight(self) -> int:
        return len(self._fifo)

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest command in flight has waited for its reply (0: none)."""
        return now - self._fifo[0][1] if self._fifo else 0.0

    def send(self, payload: bytes, items: Sequence[Any]) -> None:
        """Write packed commands, one item per command, in order."""
        transport = self._transport
        if transport is None:
            raise ConnectionError("the script connection is closed")
        now = time.monotonic()
        self._fifo.extend((item, now) for item in items)
        transport.write(payload)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()  # connection_lost fails what is in flight

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        reader, fifo, on_reply = self._reader, self._fifo, self._on_reply
        reader.feed(data)
        now = time.monotonic()
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(ConnectionError(f"unreadable reply from Redis: {exc}"))
                return
            if reply is False:
                return
            if not fifo:
                self._fail(ConnectionError(f"a reply nobody asked for: {reply!r}"))
                return
            item, sent = fifo.popleft()
            on_reply(item, reply, now - sent)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(ConnectionError(f"lost the script connection: {exc or 'closed by Redis'}"))
        if not self._closed.done():
            self._closed.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self._transport is not None:
            self._transport.abort()
            self._transport = None
        fifo, self._fifo = self._fifo, deque()
        for item, _ in fifo:
            self._on_lost(item, exc)


def _settle(waiter: asyncio.Future[Any], reply: Any, _elapsed: float) -> None:
    if not waiter.done():
        waiter.set_result(reply)


def _lost(waiter: asyncio.Future[Any], exc: Exception) -> None:
    if not waiter.done():
        waiter.set_exception(exc)


class RespClient:
    """Request/response over one lazily opened `RespConnection`, replies raw from hiredis (bulk
    strings stay bytes, nothing is converted): for a reader whose replies are big and whose
    caller wants them as they come, e.g. the ledger flusher's XREADGROUP. Error replies raise
    redis-py's `ResponseError`; a lost connection fails the calls in flight with
    `ConnectionError`, and the next call opens a new one."""

    def __init__(self, ep: Endpoint, *, name: str, timeout_s: float = 10.0) -> None:
        self._ep = ep
        self._name = name
        self._timeout_s = timeout_s
        self._conn: RespConnection | None = None

    async def call(self, *args: Arg) -> Any:
        return (await self.call_many([pack(args)]))[0]

    async def call_many(self, payloads: Sequence[bytes]) -> list[Any]:
        """Packed commands written at once (a pipeline); their replies in order. An error reply
        raises `ResponseError` after all replies are in."""
        conn = self._conn
        if conn is None or not conn.is_open:
            conn = self._conn = await RespConnection.open(
                self._ep, _settle, _lost, name=self._name, timeout_s=self._timeout_s)
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future[Any]] = [loop.create_future() for _ in payloads]
        conn.send(b"".join(payloads), waiters)
        try:
            replies = [await w for w in waiters]
        except asyncio.CancelledError:
            # The replies would come to nobody (a read they held stays pending on the server).
            conn.close()
            raise
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise ResponseError(str(reply))  # redis-py's, as its clients raise
        return replies

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def pack_ids(head: Sequence[Arg], ids: Sequence[str]) -> bytes:
    """One command ending in many ASCII strings (stream ids), packed with one join instead of a
    call per argument: an XACK of a thousand ids is one command."""
    return b"*%d\r\n%s%s" % (
        len(head) + len(ids), b"".join([bulk(a) for a in head]),
        "".join([f"${len(i)}\r\n{i}\r\n" for i in ids]).encode("ascii"),
    )
