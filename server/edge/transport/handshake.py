"""The ASGI scope of an accepted WebSocket upgrade (ASGI spec 2.4, websocket scope), and the
upgrade's response as the app accepted it."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from websockets.http11 import Request, Response

from server.edge.wire import EXTENSION


def asgi_scope(request: Request, client: tuple[str, int] | None, root_path: str,
               app_state: dict[str, Any], edge: object) -> dict[str, Any]:
    raw_path, _, query = request.path.partition("?")
    subprotocols = [p.strip() for h in request.headers.get_all("Sec-WebSocket-Protocol")
                    for p in h.split(",")]
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": None,
        "client": client,
        "root_path": root_path,
        "path": root_path + unquote(raw_path),
        "raw_path": (root_path + raw_path).encode("ascii"),
        "query_string": query.encode("ascii"),
        "headers": [(k.lower().encode("ascii"), v.encode("latin-1"))
                    for k, v in request.headers.raw_items()],
        "subprotocols": subprotocols,
        "state": app_state.copy(),
        "extensions": {EXTENSION: edge},
    }


def accept_response(response: Response, subprotocol: str | None,
                    headers: list[tuple[bytes, bytes]]) -> Response:
    """The 101 response with the app's `websocket.accept` subprotocol and headers."""
    if subprotocol:
        response.headers["Sec-WebSocket-Protocol"] = subprotocol
    for name, value in headers:
        response.headers[name.decode("latin-1")] = value.decode("latin-1")
    return response


def peer(client: tuple[str, int] | None) -> str:
    """A client's address for a log line."""
    return f"{client[0]}:{client[1]}" if client else "a client"
