"""Raw sockets for the edge tests: what a hostile client sends, byte for byte."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from websockets.frames import Opcode

# The same bytes the `hostile` load-test scenario sends.
from loadtest.hostile.attacks import frame, upgrade

__all__ = ["close_code", "frame", "raw", "read_to_end", "upgrade"]


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
