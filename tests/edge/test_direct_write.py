"""The fan-out path into giftwire's WebSocket protocol (`EdgeWebSocket.write_frames`): whole
frames built by the writer reach the socket as they are, and nothing follows a close frame."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

from websockets.frames import Close, Opcode

from server.edge.transport import framing
from server.edge.transport.websocket import EdgeWebSocket
from tests.edge.support import frame
from tests.support.frames import unframe


class _Config:
    loaded = True
    root_path = ""
    ws_ping_interval = None
    ws_ping_timeout = None

    def __init__(self, app: Any) -> None:
        self.loaded_app = app


class _ServerState:
    def __init__(self) -> None:
        self.connections: set[object] = set()
        self.tasks: set[asyncio.Task[None]] = set()


class _Transport:
    """Keeps every byte written; reading can be paused and resumed like a socket's."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closing = False

    def write(self, data: bytes) -> None:
        assert not self.closing
        self.out += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _accepted() -> tuple[EdgeWebSocket, _Transport, asyncio.Event]:
    accepted, done = asyncio.Event(), asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "giftwire.v1.msgpack"})
        accepted.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass
        done.set()

    ws = EdgeWebSocket(_Config(app), _ServerState(), {}, asyncio.get_running_loop())
    transport = _Transport()
    ws.connection_made(transport)  # type: ignore[arg-type]  # a stand-in, not a Transport
    key = base64.b64encode(os.urandom(16)).decode()
    ws.data_received(
        f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: giftwire.v1.msgpack\r\n\r\n".encode())
    await accepted.wait()
    head_end = transport.out.index(b"\r\n\r\n") + 4
    assert b" 101 " in transport.out[:head_end]
    del transport.out[:head_end]
    return ws, transport, done


async def test_frames_are_written_as_built_and_nothing_follows_the_close_echo() -> None:
    ws, transport, done = await _accepted()
    batch = framing.frame(b"\x92\x01\x02") + framing.frame(b"x" * 300)
    assert ws.write_frames(batch)
    assert bytes(transport.out) == batch
    assert unframe(bytes(transport.out)) == [b"\x92\x01\x02", b"x" * 300]
    del transport.out[:]
    await ws.send({"type": "websocket.send", "text": "hé"})  # ASGI send: the same frames
    await ws.send({"type": "websocket.send", "bytes": b"\x01"})
    assert bytes(transport.out) == framing.frame("hé") + framing.frame(b"\x01")
    assert transport.out[0] == framing.TEXT and unframe(bytes(transport.out))[0] == "hé".encode()
    del transport.out[:]
    ws.data_received(frame(Opcode.CLOSE, Close(1000, "bye").serialize()))
    echo = bytes(transport.out)  # the close echo: one whole unmasked close frame
    assert echo[0] == 0x88 and len(echo) == 2 + echo[1]
    assert Close.parse(echo[2:]).code == 1000
    assert not ws.write_frames(framing.frame(b"late"))  # refused: the close went out
    assert bytes(transport.out) == echo
    await done.wait()


async def test_the_peers_close_reply_to_our_close_closes_the_socket_at_once() -> None:
    """A client answers the server's close and then waits for the server to close TCP (RFC 6455
    7.1.1): the reply is read and the socket closed then, not when the close timer fires."""
    ws, transport, done = await _accepted()
    await ws.send({"type": "websocket.close", "code": 4005, "reason": "rotated"})
    sent = bytes(transport.out)
    assert sent[0] == 0x88 and Close.parse(sent[2:]).code == 4005
    assert not transport.closing  # reading on, for the reply
    ws.data_received(frame(Opcode.TEXT, b"late") + frame(Opcode.CLOSE, Close(4005, "").serialize()))
    assert transport.closing
    assert bytes(transport.out) == sent  # the reply is not echoed, the late message not taken
    ws.connection_lost(None)  # what the closed socket reports: the app is told
    await done.wait()
