"""The front door: every TCP connection passes here before uvicorn's HTTP parser sees a byte.

uvicorn's `http=` option takes a protocol class; this one wraps uvicorn's own httptools protocol
through the public `asyncio.Protocol` interface only, and bounds what a client can make the
server hold before it is anyone (docs/protocol.md, "Limits of the socket edge"):

- connections per client address that are not yet trusted (no complete request head, or a
  WebSocket that has not said `hello`): `max_pending_per_address`, and new connections per
  second (`accept_rate_per_s` beyond `accept_burst`); over either, the socket is held unread for
  `refused_hold_s` and then reset (at once when `refused_hold_max` are held already, or
  `max_pending_per_address` of its address): a client that reconnects the moment it is refused
  then costs an accept per hold, not one every few microseconds (a storm from one address took
  a sixth of a core in accepts and resets);
- HTTP requests per client address: `http_rate_per_s` beyond `http_burst`, else 429 with
  `Retry-After` before the request is parsed further (no auth, no body read);
- each request head must complete within `handshake_timeout_s` of its first byte (of the accept,
  for the first), in at most `http_max_header_bytes` and `http_max_headers` lines: else 408 / 431
  and close, having buffered no more than the limit;
- a declared body over `http_max_body_bytes` is refused with 413 before it is read; a request
  without a length (`Transfer-Encoding`) with 411, since the gate must know where the next head
  starts to bound it too.

A WebSocket upgrade hands the connection, and its pending slot, to websocket.py beside this.

Each refusal answered here (the app never sees it) is reported to `on_refused` (status, code),
which the server counts with the app's own problem responses: the operator view's rate-limit and
error counts include the gate's 429s and 4xx. Likewise each WebSocket closed for a broken limit
(1002, 1007, 1008, 1009) is reported to `on_violation` (its close code) and counted as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from protocol import ErrorCode
from server.edge.transport.admission import Admission, EdgeLimits, Violation
from server.edge.transport.websocket import EdgeWebSocket

log = logging.getLogger("giftwire.gate")

HELD_RCVBUF = 2048  # a held refused socket's receive buffer (the kernel doubles it)
_REASONS = {408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
            429: "Too Many Requests", 431: "Request Header Fields Too Large", 400: "Bad Request"}
_CODES = {408: ErrorCode.HANDSHAKE_TIMEOUT, 411: ErrorCode.LENGTH_REQUIRED,
          413: ErrorCode.FRAME_TOO_LARGE, 429: ErrorCode.RATE_LIMITED,
          431: ErrorCode.HEADERS_TOO_LARGE,
          400: ErrorCode.INVALID_MESSAGE}

Refused = Callable[[int, str], None]  # (HTTP status, problem code) of a refusal answered here


class Gate(asyncio.Protocol):
    limits: EdgeLimits = EdgeLimits()
    admission: Admission = Admission.from_limits(EdgeLimits())
    on_refused: Refused | None = None

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = _loop or asyncio.get_event_loop()
        # uvicorn's protocol is made only for an admitted connection: a reconnect storm's refused
        # sockets (refused at the accept) do not pay for its parser, logger lookups and state.
        self._inner_args = (config, server_state, app_state, _loop)
        self.inner: HttpToolsProtocol | None = None
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self.pending = False  # holds a slot of its address in `admission`
        self.held = False  # refused, held unread until its reset (`admission.held`)
        self.deadline: asyncio.TimerHandle | None = None
        self.head = bytearray()  # the current request head while it is incomplete
        self.in_head = True
        self.body_left = 0
        self.requests = 0
        self.upgrading = False  # what follows an upgrade head is the WebSocket's
        self.discarding = 0  # refused: bytes still read and dropped before the close
        self.heads_this_read = 0
        self.pipelined = False  # the current request came behind another in the same read
        self.retry_ms = 0  # of a 429

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) else ""
        if not self.admission.admit(self.address):
            self._hold_refused(transport)
            return
        self.pending = True
        self._arm()
        config, server_state, app_state, loop = self._inner_args
        self.inner = HttpToolsProtocol(config=config, server_state=server_state,
                                       app_state=app_state, _loop=loop)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return  # refused at the accept: nothing of it is read
        if self.discarding:
            self.discarding = max(0, self.discarding - len(data))
            if not self.discarding and self.transport is not None:
                self.transport.close()
            return
        refusal = self._scan(data)
        if refusal:
            self._refuse(refusal)
            return
        self.inner.data_received(data)
        transport = self.transport
        if transport is not None and transport.get_protocol() is not self:
            # Upgraded: the WebSocket protocol holds the pending slot until `hello`.
            self._disarm()
            self.pending = False

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._release()
        if self.held:
            self.held = False
            self.admission.unhold(self.address)
            self._inner_args[1].connections.discard(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def shutdown(self) -> None:
        """uvicorn's server shutdown, for a held refused connection (an admitted one is uvicorn's
        own protocol's): reset now."""
        if self.transport is not None:
            self.transport.abort()

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- request heads ------------------------------------------------------------------------

    def _scan(self, data: bytes) -> int:
        """Follow request boundaries through `data`; the status to refuse with, or 0."""
        limits, pos, size = self.limits, 0, len(data)
        self.heads_this_read = 0
        while pos < size and not self.upgrading:
            if not self.in_head:
                step = min(self.body_left, size - pos)
                pos += step
                self.body_left -= step
                if self.body_left == 0:
                    self.in_head = True
                continue
            if not self.head and self.deadline is None:
                self._arm()  # a new head starts: it must complete in time too
            seen = len(self.head)
            room = limits.http_max_header_bytes + 1 - seen
            self.head += data[pos : pos + room]
            end = self.head.find(b"\r\n\r\n", max(0, seen - 3))
            if end < 0:
                if len(self.head) > limits.http_max_header_bytes:
                    return 431
                return 0
            pos += end + 4 - seen
            status = self._head_done(bytes(self.head[:end]))
            if status:
                return status
        return 0

    def _head_done(self, head: bytes) -> int:
        self.pipelined = self.heads_this_read > 0
        self.heads_this_read += 1
        self.head = bytearray()
        self._disarm()
        self.requests += 1
        lines = head.split(b"\r\n")
        if len(lines) - 1 > self.limits.http_max_headers:
            return 431
        length, upgrade = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    return 400
                if length < 0:
                    return 400
            elif name == b"transfer-encoding":
                return 411
            elif name == b"upgrade":
                upgrade = True
        if length > self.limits.http_max_body_bytes:
            self.body_left = length  # what a lingering close reads and drops
            return 413
        if upgrade:
            self.upgrading = True
        elif (retry := self.admission.request(self.address)):
            self.retry_ms = retry
            self.body_left = length  # what a lingering close reads and drops
            return 429
        else:
            self._release()  # an HTTP request: no longer an anonymous pending connection
        self.body_left = length
        self.in_head = length == 0
        return 0

    # -- helpers ------------------------------------------------------------------------------

    def _hold_refused(self, transport: asyncio.Transport) -> None:
        """Refused at the accept: held unread, then reset (nothing of it is ever parsed)."""
        if self.limits.refused_hold_s <= 0 or not self.admission.hold(self.address):
            transport.abort()
            return
        self.held = True
        self._inner_args[1].connections.add(self)  # uvicorn's shutdown resets it (`shutdown`)
        transport.pause_reading()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # What the client may send meanwhile sits in the kernel: keep that small.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, HELD_RCVBUF)
        self.deadline = self.loop.call_later(self.limits.refused_hold_s, transport.abort)

    def _arm(self) -> None:
        self.deadline = self.loop.call_later(self.limits.handshake_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _timed_out(self) -> None:
        self.deadline = None
        log.debug("closing %s: no complete request head in time", self.address)
        self._refuse(408)

    def _release(self) -> None:
        if self.pending:
            self.pending = False
            self.admission.release(self.address)

    def _refuse(self, status: int) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.on_refused is not None:
            self.on_refused(status, _CODES[status].value)
        if not self.pipelined:
            # A request sent behind another in the same read (pipelining) may still have an
            # earlier answer in flight: it gets no answer of ours mixed into that one.
            body = json.dumps({"type": "about:blank", "title": _REASONS[status],
                               "status": status, "code": _CODES[status].value}).encode()
            retry = f"retry-after: {-(-self.retry_ms // 1000)}\r\n" if status == 429 else ""
            transport.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n{retry}"
                "content-type: application/problem+json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body
            )
            if status != 408 and transport.can_write_eof():
                # Lingering close (as nginx does): a client still sending its request would get
                # a reset that destroys the answer in flight. Read and drop what it sends, up to
                # a bound and a deadline, after the answer and our end of the stream.
                transport.write_eof()
                limits = self.limits
                self.discarding = (min(self.body_left, 16 * limits.http_max_body_bytes)
                                   + 4 * limits.http_max_header_bytes)
                self.body_left = 0
                self._disarm()
                self.deadline = self.loop.call_later(self.limits.handshake_timeout_s,
                                                     transport.close)
                return
        transport.close()


def edge_protocols(config: Any, on_refused: Refused | None = None,
                   on_violation: Violation | None = None
                   ) -> tuple[type[Gate], type[EdgeWebSocket]]:
    """uvicorn's `http=` and `ws=` classes bound to this server's limits (one admission count
    per server, shared by its gate and its WebSockets), told of the gate's refusals and of the
    WebSockets closed for a broken limit."""
    limits = EdgeLimits.from_config(config)
    admission = Admission.from_limits(limits)
    # staticmethod: a hook read from an instance is the callable itself (or None), not bound.
    ws_class = type("GiftwireWebSocket", (EdgeWebSocket,),
                    {"limits": limits, "admission": admission, "__slots__": (),
                     "on_violation": staticmethod(on_violation)})
    gate_class = type("GiftwireGate", (Gate,), {"limits": limits, "admission": admission,
                                                "on_refused": staticmethod(on_refused)})
    return gate_class, ws_class
