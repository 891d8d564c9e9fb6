"""`/ws`: the raw ASGI endpoint that accepts a WebSocket and runs its session
(server/edge/connection.py). Refused before the handshake (HTTP 403) while draining, before the
real-time component runs, or when no offered subprotocol has a codec."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qs

from protocol import select_subprotocol
from protocol.limits import MAX_TOKEN_LEN
from server.edge.connection import Connection
from server.edge.realtime import Realtime
from server.edge.wire import edge_of


class _WsEndpoint:
    """A raw ASGI app (a class, so Starlette's route passes scope/receive/send through)."""

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        # Returns the session's coroutine rather than awaiting it: one frame fewer held for the
        # connection's life.
        return _serve_socket(scope, receive, send)


ws_endpoint = _WsEndpoint()


async def _serve_socket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    rt = scope["app"].state.runtime
    realtime: Realtime | None = rt.components.get("realtime")
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    subprotocol = select_subprotocol(scope.get("subprotocols") or [])
    if realtime is None or rt.draining or subprotocol is None:
        # Refused before the handshake: HTTP 403. No subprotocol means no codec to explain in.
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    # giftwire's own WebSocket protocol (server/edge/transport/websocket.py); under another
    # server the session still works, through ASGI send, unbounded by socket buffers.
    edge = edge_of(scope)
    scope["headers"] = []  # read: nothing needs them for the connection's life
    conn = Connection(rt, realtime, send, subprotocol, edge)
    conn.bound_socket_buffers(rt.config.writer_max_bytes, rt.config.socket_sndbuf)
    query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
    token = (query.get("token") or [None])[0]
    if token is not None and len(token) > MAX_TOKEN_LEN:
        token = None
    realtime.connections.add(conn)
    rt.metrics.connections.inc()
    rt.metrics.process_connections.inc()
    try:
        await conn.run(receive, token)
    finally:
        realtime.connections.discard(conn)
        rt.metrics.connections.dec()
        rt.metrics.process_connections.dec()
