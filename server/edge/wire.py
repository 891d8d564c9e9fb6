"""The synchronous path from a writer to the client's socket, past the ASGI `send` coroutine.

ASGI `send` is a coroutine: every frame through it costs a task wake-up, and fan-out to N members
costs N of them per flush. `websockets.broadcast` (the raw baseline) has none: it serialises each
frame with the sans-I/O protocol and hands the bytes to the transport, no await. A `Wire` does the
same for one connection, so the flush clock writes every dirty connection in one callback.

The wire is giftwire's own WebSocket protocol (server/edge/transport/websocket.py), which puts
itself in the ASGI scope as `scope["extensions"]["giftwire.edge"]`: an interface we own, not a
server's internals. Under any other server there is no edge object and the writer falls back to
its task and ASGI `send` (unbounded by socket buffers: run giftwire's `serve`).
"""

from __future__ import annotations

from typing import Any, Protocol

EXTENSION = "giftwire.edge"


class Wire(Protocol):
    def write_frames(self, data: bytes) -> bool:
        """Hand whole, already framed server frames (server/edge/transport/framing.py) to the
        transport in one write; False once the connection is closing."""
        ...

    def pending(self) -> int:
        """Bytes the transport holds that the client has not taken yet."""
        ...

    async def writable(self) -> None:
        """Until the client has read the transport's buffer down to its low-water mark (at once
        unless it is past its high-water mark, half of `writer_max_bytes`)."""
        ...


class Edge(Wire, Protocol):
    """What a session uses of giftwire's WebSocket protocol beyond the wire."""

    transport: Any  # asyncio.Transport: socket options, and abort() for a client that stalls

    def admitted(self) -> None:
        """The session said hello: it no longer counts as a pending connection."""
        ...


def edge_of(scope: dict[str, Any]) -> Edge | None:
    """giftwire's WebSocket protocol serving this ASGI scope, if it is ours."""
    edge: Edge | None = (scope.get("extensions") or {}).get(EXTENSION)
    return edge
