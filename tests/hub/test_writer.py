"""The bounded writer on its own: batching into one frame per window, replies ahead of data,
the byte bound under a stalled send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import msgpack

from protocol import MsgpackCodec
from server.edge.transport import framing
from server.edge.writer import FlushScheduler, Writer
from tests.support.frames import unframe


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


class Transport:
    """A `server.edge.wire.Wire` over an in-memory transport: frames handed over synchronously;
    while `stalled`, written bytes stay `held` (what a real transport's buffer holds for a client
    that does not read)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []  # payloads, unframed
        self.writes = 0
        self.on_write: Callable[[], None] | None = None
        self.held = 0
        self.stalled = False
        self.open = True
        self.arrived = asyncio.Event()

    def write_frames(self, data: bytes) -> bool:
        if not self.open:
            return False
        if self.on_write is not None:
            self.on_write()
        self.frames += unframe(data)
        self.writes += 1
        if self.stalled:
            self.held += len(data)
        self.arrived.set()
        return True

    def pending(self) -> int:
        return self.held

    def messages(self) -> list[object]:
        out: list[object] = []
        for f in self.frames:
            value = msgpack.unpackb(f)
            out.extend(value if isinstance(value, list) else [value])
        return out


def _wired(wire: Transport, max_bytes: int, scheduler: FlushScheduler, overflows: list[int]
           ) -> Writer[bytes]:
    codec = MsgpackCodec()
    return Writer(None, codec.frame, scheduler, max_bytes=max_bytes,
                  on_overflow=lambda: overflows.append(1), wire=wire)


async def test_wired_writers_are_flushed_by_the_clock_alone_one_frame_each() -> None:
    scheduler = FlushScheduler(0.01)
    wires = [Transport() for _ in range(50)]
    overflows: list[int] = []
    writers = [_wired(w, 1 << 20, scheduler, overflows) for w in wires]
    tasks_before = len(asyncio.all_tasks())
    for i in range(20):
        for w in writers:
            assert w.push(_item(i), len(_item(i)))
    assert all(not w.frames for w in wires)  # nothing before the window ends
    assert all(w.direct for w in writers)
    assert len(asyncio.all_tasks()) == tasks_before  # no task per writer
    await asyncio.gather(*(w.arrived.wait() for w in wires))
    for w in wires:
        assert len(w.frames) == 1
        assert w.messages() == [{"n": i} for i in range(20)]
    assert not overflows


async def test_a_wired_reply_is_written_at_once_ahead_of_queued_data() -> None:
    wire, overflows = Transport(), []
    w = _wired(wire, 1 << 20, FlushScheduler(10.0), overflows)  # data would wait a long window
    for i in range(5):
        w.push(_item(i), len(_item(i)))
    pong = msgpack.packb({"type": "pong"})
    w.push_control(pong, len(pong))
    # Synchronously: no await between the reply and the write.
    assert wire.messages() == [{"type": "pong"}] + [{"n": i} for i in range(5)]
    await w.drained()
    assert not overflows


async def test_a_wired_writer_overflows_when_the_transport_holds_too_much() -> None:
    wire, overflows = Transport(), []
    bound = 4096
    w = _wired(wire, bound, FlushScheduler(0.0), overflows)  # window 0: every push written
    wire.stalled = True  # the client stops reading: the transport keeps what is written
    pushed = 0
    while w.push(_item(pushed), len(_item(pushed))):
        pushed += 1
        assert w.buffered <= bound and wire.held <= bound
    assert overflows == [1] and w.overflowed and w.closed
    assert w.peak <= bound and wire.held <= bound
    assert pushed > 100
    assert not w.push(_item(0), 1)
    await w.drained()  # nothing held for a closed writer


async def test_a_wired_writer_reads_the_transport_again_before_giving_up() -> None:
    wire, overflows = Transport(), []
    bound = 4096
    w = _wired(wire, bound, FlushScheduler(10.0), overflows)
    big = msgpack.packb({"pad": "x" * 1000})
    wire.stalled = True
    for _ in range(3):
        assert w.push_control(big, len(big))  # written at once, held by the transport
    assert wire.held == 3 * len(framing.frame(big)) and w.buffered == wire.held
    wire.held = 0  # the client read everything: a push is not refused on the stale figure
    assert w.push(big, len(big)) and w.push(big, len(big))
    w.close()  # flushes: the transport holds two frames' worth again
    assert not overflows and not w.overflowed
    assert wire.messages()[-2:] == [{"pad": "x" * 1000}] * 2


async def test_a_wired_writer_stops_when_the_connection_closes() -> None:
    wire, overflows = Transport(), []
    w = _wired(wire, 1 << 20, FlushScheduler(0.0), overflows)
    wire.open = False
    assert w.push(_item(0), len(_item(0)))  # accepted, then the write finds the socket closing
    assert w.closed and not w.overflowed
    assert not w.push(_item(1), len(_item(1)))
    assert not overflows


def test_hand_built_frames_parse_as_rfc_6455_at_every_length_boundary() -> None:
    for n in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        payload = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        assert unframe(framing.frame(payload)) == [payload]
    assert unframe(framing.frame("héllo")) == ["héllo".encode()]
    assert unframe(framing.frame(b"a") + framing.frame(b"b" * 300)) == [b"a", b"b" * 300]


async def test_equal_batches_of_a_room_are_framed_once_and_written_once_each() -> None:
    scheduler = FlushScheduler(0.01)
    wires = [Transport() for _ in range(3)]
    overflows: list[int] = []
    writers = [_wired(w, 1 << 20, scheduler, overflows) for w in wires]
    shared = [_item(i) for i in range(4)]  # what the hub pushes: the same bytes to every member
    for item in shared:
        for w in writers:
            w.push(item, len(item))
    odd = msgpack.packb({"type": "pong"})
    writers[2].push_control(odd, len(odd))  # a reply: this member's batch differs
    await asyncio.gather(*(w.arrived.wait() for w in wires))
    assert [w.writes for w in wires] == [1, 1, 1]  # one transport write per member per flush
    assert wires[0].messages() == wires[1].messages() == [{"n": i} for i in range(4)]
    assert wires[2].messages() == [{"type": "pong"}] + [{"n": i} for i in range(4)]
    built = scheduler.framed([*shared], lambda items: [b"built again"])
    assert unframe(built[0]) == [MsgpackCodec().frame(shared)]  # cached: equal content, same bytes
    assert not overflows


async def _next_turn() -> None:
    """Returns once every callback queued before it has run (call_soon is FIFO)."""
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


class Clock:
    """The scheduler's clock, moved by hand: how long a flush 'took' is the test's choice."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_an_idle_loop_writes_an_event_on_its_next_turn_without_a_timer() -> None:
    # A budget of 10 s (any timer would fail this test), and a clock that says flushes take no
    # time: the loop is never behind.
    scheduler = FlushScheduler(10.0, clock=Clock())
    wire, overflows = Transport(), []
    w = _wired(wire, 1 << 20, scheduler, overflows)
    for i in range(3):  # arrived in the same turn: one frame
        w.push(_item(i), len(_item(i)))
    assert not wire.frames
    await _next_turn()
    assert wire.writes == 1 and wire.messages() == [{"n": i} for i in range(3)]
    w.push(_item(3), len(_item(3)))  # the flush took no time: the next is not deferred either
    await _next_turn()
    assert wire.writes == 2 and wire.messages()[-1] == {"n": 3}


async def test_after_a_costly_flush_the_next_batch_waits_and_grows_within_the_budget() -> None:
    clock = Clock()
    scheduler = FlushScheduler(0.5, clock=clock)
    slow, overflows = Transport(), []
    w = _wired(slow, 1 << 20, scheduler, overflows)

    def costly() -> None:
        clock.now += 1000.0  # every flush "takes" 1,000 s: far over the budget

    slow.on_write = costly
    w.push(_item(0), len(_item(0)))
    await _next_turn()
    assert slow.writes == 1
    slow.arrived.clear()
    loop = asyncio.get_running_loop()
    pushed_at = loop.time()
    for i in range(1, 11):  # a busy loop: events keep coming while the next flush waits
        w.push(_item(i), len(_item(i)))
        await _next_turn()
        assert slow.writes == 1
    await slow.arrived.wait()
    # Deferred by the budget (not the 1,000 s the flush took), and all ten events in one frame.
    assert loop.time() - pushed_at < 1000.0
    assert slow.writes == 2 and slow.messages()[1:] == [{"n": i} for i in range(1, 11)]
    assert not overflows
