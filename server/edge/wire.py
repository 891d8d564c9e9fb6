"""The synchronous path from a writer to the client's socket, past the ASGI `send` coroutine.

ASGI `send` is a coroutine: every frame through it costs a task wake-up, and fan-out to N members
costs N of them per flush. `websockets.broadcast` (the raw baseline) has none: it serialises each
frame with the sans-I/O protocol and hands the bytes to the transport, no await. A `Wire` does the
same for one connection, so the flush clock writes every dirty connection in one callback.

Only uvicorn's `websockets-sansio` protocol is reachable this way (its ASGI `receive` is a bound
method of the protocol object, which holds the sans-I/O `websockets` connection and the transport;
see `uvicorn/protocols/websockets/websockets_sansio_impl.py`). Any other server, or another
uvicorn protocol, gets no wire and the writer falls back to its task and ASGI `send`.
"""

from __future__ import annotations

from typing import Any, Protocol

from websockets.exceptions import InvalidState
from websockets.protocol import Protocol as SansIOProtocol


class Wire(Protocol):
    def write(self, frame: bytes | str) -> bool:
        """Hand one message to the transport now; False once the connection is closing."""

    def pending(self) -> int:
        """Bytes the transport holds that the client has not taken yet."""


class UvicornWire:
    """A connection of uvicorn's websockets-sansio protocol, written to directly.

    Writes stop as soon as uvicorn has sent (or been asked to send) a close frame: the sans-I/O
    connection would refuse a data frame after it, and the client must see the close last."""

    __slots__ = ("_conn", "_proto", "_transport")

    def __init__(self, proto: Any) -> None:
        self._proto = proto
        self._conn: SansIOProtocol = proto.conn
        self._transport = proto.transport

    def write(self, frame: bytes | str) -> bool:
        proto = self._proto
        if proto.close_sent or proto.disconnected or self._transport.is_closing():
            return False
        conn = self._conn
        try:
            if type(frame) is bytes:
                conn.send_binary(frame)
            else:
                assert isinstance(frame, str)
                conn.send_text(frame.encode())
        except InvalidState:
            return False
        out = conn.data_to_send()
        # join of one item returns that item: no copy in the common case
        self._transport.write(b"".join(out))
        return True

    def pending(self) -> int:
        return int(self._transport.get_write_buffer_size())


def wire_for(receive: Any) -> UvicornWire | None:
    """The direct path for this ASGI `receive`, if its server is uvicorn's websockets-sansio."""
    proto = getattr(receive, "__self__", None)
    if proto is None or not isinstance(getattr(proto, "conn", None), SansIOProtocol):
        return None
    if getattr(proto, "transport", None) is None:
        return None
    if not hasattr(proto, "close_sent") or not hasattr(proto, "disconnected"):
        return None
    return UvicornWire(proto)


def release_handshake(receive: Any, scope: dict[str, Any]) -> None:
    """Drop what only the opening handshake needed, once it is done: uvicorn keeps the parsed
    request and the response (two header maps) for the connection's life, and the scope's raw
    header list stays referenced by every frame of the ASGI call chain. Together about 5 KiB per
    idle connection, a fifth of its cost. Nothing reads them after the accept (uvicorn uses
    `response` only to send the 101, and our endpoint has read the subprotocol and the token)."""
    proto = getattr(receive, "__self__", None)
    if proto is not None and getattr(proto, "handshake_complete", False) and isinstance(
        getattr(proto, "conn", None), SansIOProtocol
    ):
        if hasattr(proto, "request"):
            proto.request = None
        if hasattr(proto, "response"):
            proto.response = None
    scope["headers"] = []
