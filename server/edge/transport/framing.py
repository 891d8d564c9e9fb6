"""Server-to-client WebSocket frames, built by hand (RFC 6455 section 5.2).

A server frame is never masked and giftwire negotiates no extension, so a whole message is a
2, 4 or 10 byte header and the payload: nothing the sans-I/O protocol's `Frame` object, its
serialiser and its output list add is needed on the fan-out path. The writer builds a batch's
bytes with these once and hands them to the transport in one write (server/edge/writer.py).
"""

from __future__ import annotations

BINARY = 0x82  # FIN and opcode 2
TEXT = 0x81  # FIN and opcode 1


def header(first: int, length: int) -> bytes:
    """The header of an unmasked frame: `first` (FIN and opcode), then the payload length."""
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def frame(payload: bytes | str) -> bytes:
    """One whole data frame: binary for bytes, text (UTF-8) for str."""
    if type(payload) is bytes:
        return header(BINARY, len(payload)) + payload
    assert isinstance(payload, str)
    data = payload.encode()
    return header(TEXT, len(data)) + data
