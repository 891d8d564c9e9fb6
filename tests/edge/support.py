"""Raw sockets for the edge tests: what a hostile client sends, byte for byte."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import AsyncIterator

from websockets.frames import Frame, Opcode

from protocol import SUBPROTOCOL_MSGPACK


@contextlib.asynccontextmanager
async def raw(port: int, *, rcvbuf: int = 0) -> AsyncIterator[tuple[asyncio.StreamReader,
                                                                     asyncio.StreamWriter]]:
    """A plain TCP connection to the server; `rcvbuf` shrinks this side's receive buffer (a
    client that reads slowly fills it, and then the server's buffers, soon)."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Send a WebSocket upgrade for /ws; returns the response head."""
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL_MSGPACK}\r\n\r\n".encode()
    )
    await writer.drain()
    return await reader.readuntil(b"\r\n\r\n")


def frame(opcode: Opcode, data: bytes = b"", *, fin: bool = True) -> bytes:
    """One client frame (masked, as a client must)."""
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    chunks = []
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def close_code(data: bytes) -> int | None:
    """The code of the first close frame (opcode 8) in server-to-client bytes."""
    pos = 0
    while pos + 2 <= len(data):
        op, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            length = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif length == 127:
            length = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        if op == Opcode.CLOSE.value:
            return int.from_bytes(data[pos : pos + 2], "big") if length >= 2 else 1005
        pos += length
    return None
