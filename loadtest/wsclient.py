"""A lean WebSocket client: websockets' sans-I/O protocol driven by an asyncio.Protocol.

The load generator holds thousands of connections per process; a task and a queue per connection
(the websockets asyncio client) cost more CPU per frame than the server under test spends, so here
bytes go from `data_received` through the sans-I/O parser straight to a callback, no task at all.
`pause()` stops reading from the socket, which is exactly what a viewer on a stalled phone does.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import cast

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

OnMessage = Callable[[bytes], None]
OnClose = Callable[[int | None], None]


class WsConnection(asyncio.Protocol):
    def __init__(
        self, url: str, subprotocol: str, on_message: OnMessage, on_close: OnClose
    ) -> None:
        self.url = url
        self._ws = ClientProtocol(
            parse_uri(url), subprotocols=[Subprotocol(subprotocol)], max_size=2**21
        )
        self._on_message = on_message
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        self._opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fragments: list[bytes] = []
        self.closed = False
        self.close_code: int | None = None

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._ws.send_request(self._ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Response):
                if ws.handshake_exc is not None:
                    self._fail_open(ws.handshake_exc)
                elif not self._opened.done():
                    self._opened.set_result(None)
                continue
            opcode = event.opcode
            if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
                if event.fin:
                    self._on_message(event.data)
                else:
                    self._fragments = [event.data]
            elif opcode is Opcode.CONT:
                self._fragments.append(event.data)
                if event.fin:
                    data, self._fragments = b"".join(self._fragments), []
                    self._on_message(data)
        self._flush()  # pongs and close replies the sans-I/O side queued

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self._opened.done():
            self._fail_open(exc or ConnectionError("connection closed during the handshake"))
        if not self.closed:
            self.closed = True
            # `close_code` needs the closing handshake finished (EOF after our reply); we drop
            # the socket as soon as we replied, so read the code the server sent.
            rcvd = self._ws.close_rcvd
            self.close_code = self._ws.close_code or (rcvd.code if rcvd is not None else None)
            self._on_close(self.close_code)

    # -- use --

    async def opened(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.shield(self._opened), timeout)

    def send(self, data: bytes) -> bool:
        """Send one frame; False when the connection is closing or closed (the server's close
        frame may arrive before the socket goes: the sans-I/O side then refuses to send)."""
        if self._transport is None or self.closed or self._ws.state is not State.OPEN:
            return False
        self._ws.send_binary(data)
        self._flush()
        return True

    @property
    def is_open(self) -> bool:
        """Frames can be sent: the handshake is done and no close has begun on either side."""
        return self._transport is not None and not self.closed and self._ws.state is State.OPEN

    def pause(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._transport is None:
            return
        try:
            self._ws.send_close(1000)
            self._flush()
        except Exception:  # already closing: the transport abort below settles it
            self._transport.abort()

    def _flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        for chunk in self._ws.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()
        if self._ws.close_expected():
            transport.close()

    def _fail_open(self, exc: BaseException) -> None:
        if not self._opened.done():
            self._opened.set_exception(exc)
            self._opened.exception()  # mark retrieved: a caller that timed out already moved on
        if self._transport is not None:
            self._transport.abort()


async def connect(
    url: str, subprotocol: str, on_message: OnMessage, on_close: OnClose, timeout: float = 10.0,
    *, rcvbuf: int | None = None,
) -> WsConnection:
    """Open a connection to a ws:// URL on this machine; raise on refusal or timeout.

    `rcvbuf` shrinks the socket's receive buffer: a phone on a bad network advertises a small
    window, so a reader that stops shows up at the server in seconds, not after megabytes.
    """
    uri = parse_uri(url)
    if uri.secure:
        raise ValueError("the load tester speaks plain ws:// to 127.0.0.1 only")
    loop = asyncio.get_running_loop()
    conn = WsConnection(url, subprotocol, on_message, on_close)
    if rcvbuf is None:
        await asyncio.wait_for(loop.create_connection(lambda: conn, uri.host, uri.port), timeout)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, (uri.host, uri.port)), timeout)
            await loop.create_connection(lambda: conn, sock=sock)
        except BaseException:
            sock.close()
            raise
    await conn.opened(timeout)
    return conn


def handshake_error(exc: BaseException) -> str:
    if isinstance(exc, InvalidHandshake):
        return f"handshake refused: {exc}"
    return f"{type(exc).__name__}: {exc}"


