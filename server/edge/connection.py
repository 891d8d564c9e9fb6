"""The `/ws` endpoint: one `Connection` per WebSocket, as a raw ASGI app (no per-frame wrappers).

Session: subprotocol picks the codec (refused before the handshake if none fits); the first message
must be `hello` (token in it or in `?token=`) within `hello_timeout_s`; then join/leave, gift,
combo_end and ping until the client leaves, idles past `idle_timeout_s` (4010), floods (4009),
sends garbage too often (4002), reads too slowly (4008, see server/edge/writer.py), or the server
drains (going_away, 1001). Every request gets exactly one reply carrying its id: its result or an
`error` with a stable code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from typing import Any

from protocol import (
    CLOSE_ON_ERROR,
    PROTOCOL_VERSION,
    Ack,
    ClientMessage,
    CloseCode,
    ComboEnd,
    ErrorCode,
    ErrorReply,
    GoingAway,
    Hello,
    Join,
    Leave,
    Left,
    Ping,
    Pong,
    ProtocolError,
    SendGift,
    ServerMessage,
    Welcome,
)
from protocol.limits import MAX_PROTOCOL_ERRORS
from server.auth import AuthError, Principal, Role
from server.edge.ratelimit import TokenBucket
from server.edge.realtime import Realtime
from server.edge.wire import Edge
from server.edge.writer import Writer
from server.hub.hub import HubError
from server.hub.rooms import TOO_SLOW_REASON
from server.runtime import BACKEND_UNAVAILABLE, log_failure

log = logging.getLogger("giftwire.ws")

_ids = itertools.count(1)
_PROCESS_TAG = f"{os.getpid():x}.{int(time.time()) & 0xFFFFFF:x}"
# How long a close may wait for a stalled client's transport before the socket is cut
# (`Config.extra["slow_close_timeout_s"]` overrides).
SLOW_CLOSE_TIMEOUT_S = 2.0


class _Closing(Exception):
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Connection:
    __slots__ = (
        "__weakref__",
        "_close_task",
        "_done",
        "_send",
        "binary",
        "bucket",
        "close_code",
        "codec",
        "conn_id",
        "counted",
        "edge",
        "errors",
        "hub",
        "in_flight",
        "last_rx",
        "opened",
        "principal",
        "rate_strikes",
        "realtime",
        "rooms",
        "rt",
        "slow_close_timeout_s",
        "writer",
    )

    def __init__(self, rt: Any, realtime: Realtime, send: Any, subprotocol: str,
                 edge: Edge | None = None) -> None:
        self.rt = rt
        self.edge = edge
        self.in_flight = False  # a request is being carried out (its reply not yet queued)
        self._done: asyncio.Future[None] | None = None  # wanted by a drain waiting for it
        self.realtime = realtime
        self.hub = realtime.hub
        self._send = send
        self.codec = realtime.hub.codecs.for_subprotocol(subprotocol)
        self.binary = self.codec.binary
        self.conn_id = f"{_PROCESS_TAG}.{next(_ids)}"
        self.counted = True
        self.principal: Principal | None = None
        self.rooms: set[str] = set()
        cfg = rt.config
        # With a wire, fan-out writes to the socket from the flush clock and no writer task runs.
        self.writer: Writer[Any] = Writer(
            None if edge is not None else self._send_frame, self.codec.frame, realtime.scheduler,
            max_bytes=cfg.writer_max_bytes, on_overflow=self._overflowed, wire=edge,
        )
        self.bucket = TokenBucket(cfg.rate_per_s, cfg.rate_burst)
        self.errors = 0
        self.rate_strikes = 0
        self.opened = self.last_rx = time.monotonic()
        self.close_code: int | None = None
        self.slow_close_timeout_s = float(
            cfg.extra.get("slow_close_timeout_s", SLOW_CLOSE_TIMEOUT_S)
        )
        self._close_task: asyncio.Task[None] | None = None

    # -- sending --------------------------------------------------------------------------------

    async def _send_frame(self, frame: bytes | str) -> None:
        if isinstance(frame, bytes):
            await self._send({"type": "websocket.send", "bytes": frame})
        else:
            await self._send({"type": "websocket.send", "text": frame})

    def reply(self, msg: ServerMessage) -> None:
        data = self.codec.encode(msg)
        self.writer.push_control(data, len(data))

    def error(self, code: ErrorCode | str, message: str, request_id: str | None, *,
              tx: str | None = None, room: str | None = None, retry_ms: int | None = None
              ) -> None:
        code = str(code)
        self.rt.metrics.protocol_errors.labels(code=code).inc()
        self.reply(ErrorReply(id=request_id, code=code, message=message, tx=tx, room=room,
                              retry_ms=retry_ms))

    # -- closing --------------------------------------------------------------------------------

    def _overflowed(self) -> None:
        self.rt.metrics.slow_disconnects.inc()
        self.kill(CloseCode.TOO_SLOW, TOO_SLOW_REASON)

    def token_ended(self, code: ErrorCode, message: str) -> None:
        """The session's token expired or was revoked while it was open: say so, close 4004
        (4005 for an overlay key that was rotated)."""
        if self.close_code is None:
            self.error(code, message, None)
            self.kill(CLOSE_ON_ERROR.get(code, CloseCode.TOKEN_EXPIRED), code.value)

    def kill(self, code: int, reason: str) -> None:
        """Close from outside the receive loop (slow client, drain, lost history)."""
        if self.close_code is not None:
            return
        self.close_code = code
        self.writer.close()
        self._close_task = asyncio.get_running_loop().create_task(self._leave_and_close(code,
                                                                                       reason))

    async def _leave_and_close(self, code: int, reason: str) -> None:
        # Out of every room at once: the close frame may wait for a stalled socket, and no more
        # fan-out work should go to this connection meanwhile.
        await self.hub.leave_all(self)
        await self._close(code, reason)

    async def _close(self, code: int, reason: str, *, flush_s: float = 0.0) -> None:
        if flush_s > 0 and not self.writer.overflowed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.writer.drained(), flush_s)
        try:
            await asyncio.wait_for(
                self._send({"type": "websocket.close", "code": int(code), "reason": reason}),
                self.slow_close_timeout_s,
            )
        except TimeoutError:
            self._abort()  # the client does not read: it cannot see a close frame either
        except Exception:
            self._abort()

    def bound_socket_buffers(self, max_bytes: int, sndbuf: int) -> None:
        """Cap what the kernel and the transport hold for this client as well. The writer's bound
        (queued + transport bytes) only starts counting once the kernel's send buffer is full, and
        Linux autotunes that up to `tcp_wmem` max (4 MiB): uncapped, a stalled reader held
        megabytes and was not detected as slow for tens of seconds. A set SO_SNDBUF also stops
        the autotuning for this socket."""
        if self.edge is None:
            return
        transport = self.edge.transport
        with contextlib.suppress(Exception):
            transport.set_write_buffer_limits(high=max_bytes // 2)
        sock = transport.get_extra_info("socket")
        if sock is not None and sndbuf > 0:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)

    def _abort(self) -> None:
        # A stalled client is cut at the socket so its buffers are freed.
        if self.edge is not None:
            self.edge.transport.abort()

    async def going_away(self, reason: str, reconnect_ms: int, flush_s: float) -> None:
        """Drain: tell the client to reconnect elsewhere, flush, close with 1001."""
        if self.close_code is not None:
            return
        self.close_code = CloseCode.GOING_AWAY
        # The session's end waits for this close: it must not end the socket before it.
        self._close_task = asyncio.current_task()
        self.reply(GoingAway(reason=reason, reconnect_ms=reconnect_ms))
        if self.in_flight:
            # A request being carried out (a gift debited, its publish pending) finishes and its
            # reply is queued before the close: a charged gift always reaches its ack.
            self._done = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._done), flush_s)
        self.writer.close()
        await self._close(CloseCode.GOING_AWAY, reason, flush_s=flush_s)

    # -- session --------------------------------------------------------------------------------

    async def run(self, receive: Any, query_token: str | None) -> None:
        loop = asyncio.get_running_loop()
        writer_task = None if self.writer.direct else loop.create_task(self.writer.run())
        try:
            await self._hello(receive, query_token)
            while self.close_code is None:
                # No timer per receive: realtime.watch_sessions closes idle sessions for all.
                message = await receive()
                # When it arrived, not when it is processed (server/edge/transport/arrival.py): a
                # stall here must not make a steady client look like a burst.
                self.last_rx = message.get("t") or time.monotonic()
                if message["type"] != "websocket.receive" or self.close_code is not None:
                    return  # closing meanwhile (a drain): not carried out, the client retries
                await self._on_frame(message)
        except _Closing as c:
            if self.close_code is None:
                self.close_code = c.code
                self.writer.close()
                await self._close(c.code, c.reason, flush_s=1.0)
        finally:
            self.realtime.pushes.detach(self)
            await self.hub.leave_all(self)
            self.writer.close()
            if self._close_task is not None:
                await asyncio.gather(self._close_task, return_exceptions=True)
            # A reply queued just before the end (going_away during a drain) still goes out; a
            # gone client fails the send at once, a stalled one is bounded here.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.writer.drained(), 1.0)
            if writer_task is not None:
                writer_task.cancel()
                await asyncio.gather(writer_task, return_exceptions=True)

    async def _hello(self, receive: Any, query_token: str | None) -> None:
        # Until a token check succeeds: one that Redis could not answer (down, or no pooled
        # connection within `redis_pool_wait_s`) is `unavailable` with retry_ms and the client
        # may send hello again on the same connection, within `hello_timeout_s` (4011).
        while (hello := await self._receive_hello(receive)) is not None:
            token = hello.token or query_token
            if not token:
                self._fatal(ErrorCode.UNAUTHORIZED, "no token", hello.id)
            try:
                async with self.realtime.auth_slots:
                    principal = await self.realtime.overlay_keys.principal_of(token)
            except AuthError as exc:
                self._fatal(exc.code, exc.message, hello.id)
            except BACKEND_UNAVAILABLE as exc:
                log.warning("token check failed: %s: %s", type(exc).__name__, exc)
                self.error(ErrorCode.UNAVAILABLE, "cannot check the token now; send hello again",
                           hello.id, retry_ms=1000)
                continue
            self.principal = principal
            self.counted = principal.role is not Role.OVERLAY
            if self.edge is not None:
                self.edge.admitted()
            # Before welcome: a change made after the client saw welcome is pushed to it.
            await self.realtime.pushes.attach(self)
            self.reply(Welcome(v=PROTOCOL_VERSION, user=principal.user, role=principal.role.value,
                               heartbeat_s=self.rt.config.heartbeat_s,
                               idle_timeout_s=self.rt.config.idle_timeout_s,
                               server_time=int(time.time() * 1000)))
            return
        raise _Closing(CloseCode.NORMAL, "bye")

    async def _receive_hello(self, receive: Any) -> Hello | None:
        """The next frame, which must be a valid `hello`; None when the client left."""
        message = await receive()
        self.last_rx = message.get("t") or time.monotonic()
        if message["type"] != "websocket.receive":
            return None
        try:
            hello = self.codec.decode_client(_payload(message))
        except ProtocolError as exc:
            self._fatal(exc.code, exc.message, exc.request_id)
        if not isinstance(hello, Hello):
            self._fatal(ErrorCode.HELLO_REQUIRED, "the first message must be hello", None)
        return hello

    def _fatal(self, code: ErrorCode | str, message: str, request_id: str | None) -> Any:
        self.error(code, message, request_id)
        close = CLOSE_ON_ERROR.get(ErrorCode(code), CloseCode.PROTOCOL_VIOLATION)
        raise _Closing(close, str(code))

    async def _on_frame(self, message: dict[str, Any]) -> None:
        try:
            msg = self.codec.decode_client(_payload(message))
        except ProtocolError as exc:
            self.errors += 1
            self.error(exc.code, exc.message, exc.request_id)
            if self.errors >= MAX_PROTOCOL_ERRORS:
                raise _Closing(CloseCode.PROTOCOL_VIOLATION, "too many invalid frames") from None
            return
        retry = self.bucket.take(self.last_rx)
        if retry:
            self.rate_strikes += 1
            self.error(ErrorCode.RATE_LIMITED, "too many requests", msg.id, retry_ms=retry,
                       tx=getattr(msg, "tx", None), room=getattr(msg, "room", None))
            if self.rate_strikes >= MAX_PROTOCOL_ERRORS:
                raise _Closing(CloseCode.RATE_LIMITED, "flood")
            return
        # Decays rather than resets: a flood that gets one refilled token through is still a flood.
        self.rate_strikes = max(0, self.rate_strikes - 1)
        self.in_flight = True
        try:
            await self._dispatch(msg)
        except Exception as exc:
            # Every request is answered, even when a backend fails under it.
            log_failure(log, msg.TYPE, exc)
            self.error(ErrorCode.UNAVAILABLE, "the server could not do this now; retry", msg.id,
                       tx=getattr(msg, "tx", None), room=getattr(msg, "room", None),
                       retry_ms=1000)
        finally:
            self.in_flight = False
            if self._done is not None and not self._done.done():
                self._done.set_result(None)

    async def _dispatch(self, msg: ClientMessage) -> None:
        if isinstance(msg, Ping):
            self.reply(Pong(id=msg.id, t=msg.t, server_time=int(time.time() * 1000)))
        elif isinstance(msg, Join):
            await self._join(msg)
        elif isinstance(msg, Leave):
            await self._leave(msg)
        elif isinstance(msg, SendGift):
            await self.realtime.gifts.send(self, msg, self.last_rx)
        elif isinstance(msg, ComboEnd):
            await self.realtime.gifts.end_combo(self, msg)
        elif isinstance(msg, Hello):
            self.error(ErrorCode.INVALID_MESSAGE, "hello was already received", msg.id)

    async def _join(self, msg: Join) -> None:
        assert self.principal is not None
        if not self.principal.may_read(msg.room):
            self.error(ErrorCode.FORBIDDEN, "this token may not read that room", msg.id,
                       room=msg.room)
            return
        if msg.room in self.rooms:
            self.error(ErrorCode.ALREADY_JOINED, "already in this room", msg.id, room=msg.room)
            return
        if len(self.rooms) >= self.rt.config.max_rooms_per_connection:
            self.error(ErrorCode.TOO_MANY_ROOMS, "room limit reached", msg.id, room=msg.room)
            return
        self.rooms.add(msg.room)
        try:
            await self.realtime.guard.join(self, msg.room, msg.after, msg.id, msg.epoch)
            if self.principal.role is Role.OVERLAY:
                await self.realtime.overlays.joined(self, msg.room)
        except HubError as exc:
            self.rooms.discard(msg.room)
            self.error(exc.code, exc.message, msg.id, room=msg.room,
                       retry_ms=1000 if exc.code == "unavailable" else None)
        except Exception as exc:
            self.rooms.discard(msg.room)
            log_failure(log, f"join {msg.room}", exc)
            self.error(ErrorCode.UNAVAILABLE, "could not join now", msg.id, room=msg.room,
                       retry_ms=1000)

    async def _leave(self, msg: Leave) -> None:
        if msg.room not in self.rooms:
            self.error(ErrorCode.NOT_JOINED, "not in this room", msg.id, room=msg.room)
            return
        self.rooms.discard(msg.room)
        await self.hub.leave(self, msg.room)
        self.reply(Left(id=msg.id, room=msg.room))

    def ack(self, msg: SendGift, balance: int, duplicate: bool) -> None:
        self.reply(Ack(id=msg.id, tx=msg.tx, balance=balance, duplicate=duplicate))


def _payload(message: dict[str, Any]) -> bytes | str:
    data = message.get("bytes")
    return data if data is not None else message.get("text") or ""
