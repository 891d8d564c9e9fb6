"""The bounded writer on its own: batching into one frame per window, replies ahead of data,
the byte bound under a stalled send."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgpack

from protocol import MsgpackCodec
from server.writer import FlushScheduler, Writer


class Sink:
    """Records frames; `gate` stalls the send like a client that stopped reading."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()

    async def send(self, frame: bytes) -> None:
        await self.gate.wait()
        self.frames.append(frame)
        self.arrived.set()

    def messages(self) -> list[object]:
        out: list[object] = []
        for f in self.frames:
            value = msgpack.unpackb(f)
            out.extend(value if isinstance(value, list) else [value])
        return out


def _writer(sink: Sink, max_bytes: int, window_s: float, overflows: list[int]) -> Writer[bytes]:
    codec = MsgpackCodec()

    def frame(items: Sequence[bytes]) -> bytes:
        return codec.frame(items)

    return Writer(sink.send, frame, FlushScheduler(window_s), max_bytes=max_bytes,
                  on_overflow=lambda: overflows.append(1))


def _item(i: int) -> bytes:
    return msgpack.packb({"n": i})


async def test_events_within_a_window_go_out_as_one_frame_in_order() -> None:
    sink, overflows = Sink(), []
    w = _writer(sink, 1 << 20, 0.01, overflows)
    task = asyncio.create_task(w.run())
    for i in range(100):
        assert w.push(_item(i), len(_item(i)))
    await sink.arrived.wait()
    assert len(sink.frames) == 1
    assert sink.messages() == [{"n": i} for i in range(100)]
    w.close()
    await task
    assert not overflows


async def test_replies_go_ahead_of_queued_data() -> None:
    sink, overflows = Sink(), []
    w = _writer(sink, 1 << 20, 10.0, overflows)  # data would wait a long window
    task = asyncio.create_task(w.run())
    for i in range(5):
        w.push(_item(i), len(_item(i)))
    pong = msgpack.packb({"type": "pong"})
    w.push_control(pong, len(pong))
    await sink.arrived.wait()
    assert sink.messages()[0] == {"type": "pong"}
    w.close()
    await task


async def test_a_stalled_send_overflows_at_the_bound_and_never_holds_more() -> None:
    sink, overflows = Sink(), []
    bound = 4096
    w = _writer(sink, bound, 0.0, overflows)
    task = asyncio.create_task(w.run())
    sink.gate.clear()  # the client stops reading
    pushed = 0
    while w.push(_item(pushed), len(_item(pushed))):
        pushed += 1
        await asyncio.sleep(0)  # let the writer take the first batch into its stalled send
        assert w.buffered <= bound
    assert overflows == [1] and w.overflowed and w.closed
    assert w.peak <= bound
    assert pushed > 100
    assert not w.push(_item(0), 1)  # closed: nothing more is accepted
    sink.gate.set()
    await task
