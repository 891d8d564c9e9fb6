"""giftwire's own WebSocket protocol for uvicorn (its supported `ws=` class option).

uvicorn hands us the connection once gate.py (beside this) and its HTTP parser have read the
upgrade request. The `websockets` sans-I/O `ServerProtocol` frames; every byte is bounded where it
arrives (docs/protocol.md, "Limits of the socket edge"):

- message bytes: `ws_max_message_bytes`, checked from each frame header before its payload is
  read (the sans-I/O parser's max_size);
- fragments per message: `ws_max_fragments`, counted frame by frame, never after buffering;
- messages read ahead of the app: at most `ws_max_queued_messages` (plus what one 1 KiB slice
  completes); the rest of a read waits unparsed, reading paused, until the session has taken them
  (the app's rate limit, `rate_limited` then 4009, sees a flood as it arrives) or we sent a close;
- control frames: pings spend a token bucket (`ws_ping_rate_per_s`, `ws_ping_burst`), over it
  1008; a pong or close that would leave more than `writer_max_bytes` + CONTROL_SLACK unread
  aborts the connection (the peer does not read, so it cannot see a close either);
- invalid UTF-8 closes 1007, one INFO line. Closes 1002, 1007-1009 cost accept tokens (admission).

The app finds this object in the ASGI scope (`scope["extensions"]["giftwire.edge"]`): the direct
write path (`write_frames`, `pending`, `writable`; server/edge/wire.py) and `admitted()` (the
session said `hello`); each receive event carries its arrival time as `t` (arrival.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal, cast

from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from protocol import CloseCode
from server.edge.ratelimit import TokenBucket
from server.edge.transport import framing
from server.edge.transport.admission import Admission, EdgeLimits, Violation, violated
from server.edge.transport.arrival import CLOCK, ArrivalWindow
from server.edge.transport.flow import WriteFlow
from server.edge.transport.handshake import accept_response, asgi_scope, peer
from server.edge.transport.keepalive import Keepalive

log = logging.getLogger("giftwire.websocket")
_sansio_log = logging.getLogger("giftwire.websocket.frames")
_sansio_log.setLevel(logging.WARNING)  # it logs every close at INFO: noise at 5,000 members

CLOSE_TIMEOUT_S = 10.0
PARSE_SLICE = 1024  # bytes handed to the frame parser at a time
# What control frames may add past the writer's bound, which data alone can fill: else the 4008
# close after an overflow would find the bound reached and cut the socket (1006) unread.
CONTROL_SLACK = 1024
_EMPTY = memoryview(b"")


class EdgeWebSocket(asyncio.Protocol):
    """One WebSocket connection. Built by `gate.edge_protocols`: limits, `on_violation`."""

    limits: EdgeLimits = EdgeLimits()
    admission: Admission | None = None
    on_violation: Violation | None = None
    __slots__ = ("app", "app_state", "arrival", "arrived", "backlog", "backlog_at", "client",
                 "close_sent", "close_timer", "conn", "connections", "disconnected", "flow",
                 "handshake_complete", "holds_admission", "keepalive", "kind", "loop", "parts",
                 "pings", "queue", "read_paused", "response", "root_path", "scope", "tasks",
                 "transport", "waiter")

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.root_path: str = config.root_path
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.conn = ServerProtocol(max_size=self.limits.ws_max_message_bytes, logger=_sansio_log)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.scope: dict[str, Any] | None = None
        self.response: Response | None = None
        # Not a deque (760 bytes empty): it holds at most `ws_max_queued_messages` and a slice.
        self.queue: list[dict[str, Any]] = []
        self.waiter: asyncio.Future[None] | None = None
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.read_paused = False
        self.holds_admission = False
        self.close_timer: asyncio.TimerHandle | None = None
        self.flow = WriteFlow()
        self.keepalive = Keepalive(self.loop, config.ws_ping_interval, config.ws_ping_timeout,
                                   self._send_ping, self._ping_timed_out)
        self.pings = TokenBucket(self.limits.ws_ping_rate_per_s, self.limits.ws_ping_burst)
        self.parts: list[bytes] = []
        self.kind: Literal["text", "bytes"] = "bytes"
        self.backlog, self.backlog_at = _EMPTY, 0  # the unparsed rest of the last read
        CLOCK.watch(self.loop)
        self.arrival = ArrivalWindow(CLOCK)
        self.arrived = 0.0  # time.monotonic() the frame being handled is taken to have arrived

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        # The gate admitted this connection and passes its slot on with the upgrade.
        self.holds_admission = self.admission is not None

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._stop_timers()
        self.disconnected = True
        self.handshake_complete = True
        self.flow.resume()
        self.admitted()
        self._enqueue({"type": "websocket.disconnect", "code": 1006 if exc else 1005})
        self._close_transport()  # closing a closing transport does nothing

    def data_received(self, data: bytes) -> None:
        # Parsed a slice at a time, only while fewer than `ws_max_queued_messages` wait: the rest
        # waits unparsed, reading paused, so a flood of tiny frames costs one read buffer.
        self.backlog, self.backlog_at = memoryview(data), 0
        self.arrival.read()
        self._parse()

    def _parse(self) -> None:
        data, limit = self.backlog, self.limits.ws_max_queued_messages
        while self.backlog_at < len(data) and self._reading() and (
                len(self.queue) < limit or self.close_sent):  # after our close nothing queues
            piece = data[self.backlog_at : self.backlog_at + PARSE_SLICE]
            self.backlog_at += len(piece)
            self.arrived = self.arrival.at(self.backlog_at / len(data))
            self.conn.receive_data(bytes(piece))
            for event in self.conn.events_received():
                if isinstance(event, Request):
                    self._on_request(event)
                elif isinstance(event, Frame):
                    self._on_frame(event)
                    if not self._reading():
                        break
        if self.backlog_at >= len(data):
            self.backlog, self.backlog_at = _EMPTY, 0
        self._flush()
        if self.conn.parser_exc is not None and not self.close_sent:
            close = self.conn.close_sent  # a malformed or oversized frame: 1002, 1007, 1009
            violated(self.admission, self.client, close.code if close else 1006, self.on_violation)
            self._end_by(close, 1006)
        elif (self.queue or self.backlog) and not self.close_sent and not self.read_paused:
            self.read_paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def shutdown(self) -> None:
        """uvicorn's server shutdown: close 1012 (service restart) unless already closing."""
        self._stop_timers()
        if self.handshake_complete and not self.close_sent:
            self._enqueue({"type": "websocket.disconnect", "code": 1012})
            self.conn.send_close(1012)
            self._flush()
        self._close_transport()

    # -- frames in ----------------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        op = frame.opcode
        if op is Opcode.TEXT or op is Opcode.BINARY:
            self.kind = "text" if op is Opcode.TEXT else "bytes"
            self.parts = [frame.data]
        elif op is Opcode.CONT:
            self.parts.append(frame.data)
            if len(self.parts) > self.limits.ws_max_fragments:
                self._fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
                return
        elif op is Opcode.PING:
            if self.pings.take(self.arrived):
                self._fail(CloseCode.POLICY_VIOLATION, "too many pings")
            return
        elif op is Opcode.PONG:
            self.keepalive.pong(bytes(frame.data))
            return
        else:  # CLOSE: the sans-I/O layer queued the echo
            self._end_by(self.conn.close_rcvd, 1005)
            return
        if frame.fin:
            self._on_message()

    def _on_message(self) -> None:
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = []
        if self.close_sent:
            return
        if self.kind == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                log.info("closing %s: invalid UTF-8 in a text message", peer(self.client))
                self._fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                return
            self._enqueue({"type": "websocket.receive", "text": text, "t": self.arrived})
        else:
            self._enqueue({"type": "websocket.receive", "bytes": bytes(data), "t": self.arrived})

    def _end_by(self, close: Close | None, default: int) -> None:
        self._end(close.code if close else default, close.reason if close else "")

    def _fail(self, code: int, reason: str) -> None:
        """Close at once for a broken rule of the edge; nothing more is read."""
        if code != CloseCode.INTERNAL_ERROR:  # a keepalive timeout is not the client's doing
            violated(self.admission, self.client, code, self.on_violation)
        self.conn.fail(code, reason)
        self._end(code, reason)

    def _end(self, code: int, reason: str) -> None:
        """Closing: the session is told (once), what is queued is written, the socket closed."""
        if not self.close_sent:
            self._enqueue({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.close_sent = True
        self._flush()
        self._close_transport()

    def _flush(self) -> None:
        """Write what the sans-I/O layer produced (pongs, close frames); a peer that leaves more
        than the write bound (plus CONTROL_SLACK) unread is cut at the socket."""
        out = self.conn.data_to_send()
        transport = self.transport
        if not out or transport is None or transport.is_closing():
            return
        transport.write(b"".join(out))
        if transport.get_write_buffer_size() > self.limits.writer_max_bytes + CONTROL_SLACK:
            log.info("aborting %s: over its write bound", peer(self.client))
            transport.abort()

    def write_frames(self, data: bytes) -> bool:
        """The direct path (server/edge/wire.py): whole frames (transport/framing.py) written as
        they are. The sans-I/O protocol tracks no state of whole data frames sent; it writes the
        pongs and the close, and after its close (`close_sent`) nothing more is written."""
        transport = self.transport
        if (self.close_sent or self.disconnected or transport is None or transport.is_closing()
                or self.conn.close_sent is not None):
            return False
        transport.write(data)
        return True

    def pending(self) -> int:
        return 0 if self.transport is None else int(self.transport.get_write_buffer_size())

    async def writable(self) -> None:
        await self.flow.wait()

    def pause_writing(self) -> None:  # asyncio's flow control, past the high-water mark
        self.flow.pause(self.loop)

    def resume_writing(self) -> None:
        self.flow.resume()

    # -- the app's side (ASGI) ----------------------------------------------------------------

    def _on_request(self, request: Request) -> None:
        response = self.conn.accept(request)
        if response.status_code != 101:
            self.close_sent = self.handshake_complete = True
            self.conn.send_response(response)
            self._flush()
            self._close_transport()
            return
        self.response = response
        self.scope = asgi_scope(request, self.client, self.root_path, self.app_state, self)
        # The sans-I/O parser keeps this request for good (in its generator): drop its headers.
        request.headers.clear()
        self._enqueue({"type": "websocket.connect"})
        task = self.loop.create_task(self._run_asgi())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_asgi(self) -> None:
        assert self.scope is not None
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("WebSocket application failed")
            self._reject(500)
        if not self.handshake_complete:
            self._reject(500)
        if self.close_timer is None:
            self._close_transport()

    def _reject(self, status: int) -> None:
        if self.handshake_complete:
            return
        self.close_sent = self.handshake_complete = True
        self.conn.send_response(self.conn.reject(status, ""))
        self._flush()
        self._close_transport()

    async def receive(self) -> dict[str, Any]:
        while not self.queue:
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        message = self.queue.pop(0)
        if not self.queue and not self.close_sent:
            if self.backlog:
                self._parse()  # the rest of the last read, now that the session has room
            if self.read_paused and not self.queue and not self.backlog:
                self.read_paused = False
                assert self.transport is not None
                self.transport.resume_reading()
        return message

    def _enqueue(self, message: dict[str, Any]) -> None:
        self.queue.append(message)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if not self.handshake_complete:
            if kind == "websocket.accept":
                self._accept(message.get("subprotocol"), message.get("headers") or [])
            elif kind == "websocket.close":
                self._enqueue({"type": "websocket.disconnect", "code": 1006})
                self._reject(403)
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r} before the handshake")
            return
        if self.disconnected:
            raise OSError("the client has disconnected")
        if self.close_sent:
            return
        if kind == "websocket.send":
            data = message.get("bytes")
            payload = data if data is not None else message.get("text") or ""
            if not self.write_frames(framing.frame(payload)):
                raise OSError("the connection is closing")
        elif kind == "websocket.close":
            self.conn.send_close(int(message.get("code", 1000)), message.get("reason") or "")
            self.close_sent = True
            self._flush()
            transport = self.transport
            if transport is not None:
                self.close_timer = self.loop.call_later(CLOSE_TIMEOUT_S, transport.abort)
            if self.read_paused and transport is not None:  # read on to the peer's reply: what
                self.read_paused = False  # is left of the last read first (it may hold it)
                self._parse()
                transport.resume_reading()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def _accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        assert self.response is not None
        self.handshake_complete = True
        self.conn.send_response(accept_response(self.response, subprotocol, headers))
        self._flush()
        # Nothing reads the response or the request headers again: drop them (~5 KiB each).
        self.response = None
        if self.scope is not None:
            self.scope["headers"] = []
        self.keepalive.start()

    def admitted(self) -> None:
        """The session said `hello` (or is gone): no longer counted against its address's cap."""
        if self.holds_admission and self.admission is not None:
            self.holds_admission = False
            self.admission.release(self.client[0] if self.client else "")

    def _close_transport(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _reading(self) -> bool:
        """Before any close, and after ours until the peer's reply: reading it closes TCP at once
        (the client waits for the server to, RFC 6455 7.1.1), not at CLOSE_TIMEOUT_S."""
        t = self.transport
        return not self.close_sent or (self.close_timer is not None and t is not None
                                       and not t.is_closing())

    def _closing(self) -> bool:  # (keepalive)
        return self.close_sent or self.transport is None or self.transport.is_closing()

    def _send_ping(self, payload: bytes) -> bool:
        if self._closing():
            return False
        self.conn.send_ping(payload)
        self._flush()
        return True

    def _ping_timed_out(self) -> None:
        if not self._closing():
            self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _stop_timers(self) -> None:
        self.keepalive.stop()
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
