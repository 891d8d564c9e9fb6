"""Whole server frames parsed back into payloads by websockets' own frame parser (as a client
would read them), so a hand-built frame that breaks RFC 6455 fails here."""

from __future__ import annotations

from collections.abc import Generator

from websockets.frames import Frame, Opcode


def unframe(data: bytes) -> list[bytes]:
    pos = 0

    def read_exact(n: int) -> Generator[None, None, bytes]:
        nonlocal pos
        if pos + n > len(data):
            raise AssertionError(f"truncated frame at byte {pos} of {len(data)}")
        chunk = data[pos:pos + n]
        pos += n
        return chunk
        yield  # a generator, as the parser expects

    payloads: list[bytes] = []
    while pos < len(data):
        parser = Frame.parse(read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frame: Frame = done.value
        else:
            raise AssertionError("the parser wanted more bytes than a whole frame")
        assert frame.fin and frame.opcode in (Opcode.BINARY, Opcode.TEXT)
        payloads.append(bytes(frame.data))
    return payloads
