"""The per-connection writer: a bounded buffer of pre-encoded messages, flushed in batch frames.

Fan-out never awaits a client: it appends the same encoded bytes to each member's writer (`push`,
synchronous, O(1)) and moves on. Data is flushed by one shared scheduler (`FlushScheduler`: one
callback per process per flush, not one per event or per connection; at once when the loop is
idle, later and in bigger batches when it is busy); replies (`push_control`: acks, errors,
pongs, joined) are sent at once and go ahead of queued data, so liveness never waits behind a
backlog.

Two ways to the client (server/edge/wire.py):
- a `Wire` (giftwire's own WebSocket protocol): the flush writes the batch straight into the
  transport, synchronously, like `websockets.broadcast`, as whole frames built by hand
  (transport/framing.py): one transport write per connection per flush, and the bytes built once
  for all members whose batches are equal (`FlushScheduler.framed`). No task per connection, no
  wake-up per flush. The bound counts queued bytes plus what the transport still holds; a flush
  or push past `max_bytes` overflows.
- otherwise ASGI `send`, from one long-lived task per writer (`run`), woken once per flush. The
  bound counts queued bytes plus the frame being sent, whose send stalls while the client does not
  read.

Either way the first push or flush past `max_bytes` drops the queue and calls `on_overflow` (the
connection closes with 4008). Nothing else waits for that client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from protocol.limits import MAX_SERVER_FRAME_BYTES
from server.edge.transport import framing
from server.edge.wire import Wire

log = logging.getLogger("giftwire.writer")

F = TypeVar("F", bytes, str)

# Split batches well below the client's frame limit.
MAX_FRAME_BYTES = MAX_SERVER_FRAME_BYTES // 2


class FlushScheduler:
    """When dirty writers are flushed: coalescing that grows with load (docs/hub.md, "Flush
    policy").

    - Light load: the flush runs on the next turn of the event loop (`call_soon`, no timer), so an
      event waits for nothing but the callbacks already queued; everything that arrived in the
      same turn (one read of the pub/sub socket can hold many events) shares the flush.
    - Behind: a flush writes every dirty connection synchronously, and while it runs nothing else
      does. The next flush then waits as long as that one took, capped by the latency budget
      (`budget_s`, `writer_window_ms`), so writing takes at most about half of a busy loop and
      the senders, acks and the broker get the rest; what arrives meanwhile joins the waiting
      batch, so events per frame rise with the load while the wait stays bounded.
    - `budget_s <= 0`: no coalescing at all, every push is written at once (tests).
    """

    def __init__(self, budget_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget_s = budget_s
        self._clock = clock
        self._due: list[Writer[bytes] | Writer[str]] = []
        self._handle: asyncio.Handle | None = None
        self._ready_at = 0.0  # loop time before which a new flush waits (the last one's cost)
        self._last_items: list[Any] = []
        self._last_framed: tuple[bytes, int] = (b"", 0)

    def schedule(self, writer: Writer[bytes] | Writer[str]) -> None:
        if self.budget_s <= 0:
            writer.wake()
            return
        self._due.append(writer)
        if self._handle is None:
            loop = asyncio.get_running_loop()
            wait = self._ready_at - loop.time()
            self._handle = (loop.call_later(wait, self._fire) if wait > 0
                            else loop.call_soon(self._fire))

    def _fire(self) -> None:
        self._handle = None
        due, self._due = self._due, []
        started = self._clock()
        for writer in due:
            try:
                writer.wake()
            except Exception:
                # One connection's failure must not leave the others' data behind.
                log.exception("flush failed")
        took = self._clock() - started
        self._ready_at = asyncio.get_running_loop().time() + min(took, self.budget_s)

    def framed(self, items: list[Any], split: Callable[[list[Any]], list[Any]]
               ) -> tuple[bytes, int]:
        """The wire bytes of one writer's batch (its frames, headers included) and how many
        frames they are. Members of a room are flushed one after another and queue the same
        shared encoded events, so their batches are equal: the bytes are built once per room
        per flush and every member's flush is a single transport write of the same object.
        Equal content means equal bytes, so the cache never needs invalidating."""
        if items == self._last_items:
            return self._last_framed
        frames = split(items)
        data = framing.frame(frames[0]) if len(frames) == 1 else b"".join(
            [framing.frame(f) for f in frames])
        self._last_items, self._last_framed = items, (data, len(frames))
        return data, len(frames)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._due = []


class Writer(Generic[F]):
    # Slots and futures made on demand (no asyncio.Event, whose waiter deque alone is ~0.6 KiB):
    # an idle connection should cost little beyond what uvicorn itself needs.
    __slots__ = (
        "_control", "_data", "_drain_waiters", "_frame", "_inflight", "_on_overflow", "_queued",
        "_scheduled", "_scheduler", "_send", "_sending", "_waiter", "_wire", "_woken", "closed",
        "frames_sent", "max_bytes", "overflowed", "peak",
    )

    def __init__(
        self,
        send: Callable[[F], Awaitable[None]] | None,
        frame: Callable[[Sequence[F]], F],
        scheduler: FlushScheduler,
        *,
        max_bytes: int,
        on_overflow: Callable[[], None],
        wire: Wire | None = None,
    ) -> None:
        if send is None and wire is None:
            raise ValueError("a writer needs a wire or a send")
        self._send = send
        self._wire = wire
        self._frame = frame
        self._scheduler = scheduler
        self.max_bytes = max_bytes
        self._on_overflow = on_overflow
        self._control: list[F] = []
        self._data: list[F] = []
        self._queued = 0  # bytes in _control + _data
        # Task mode: bytes of the frame being sent. Wire mode: what the transport held at the last
        # look (re-read before overflowing, since the client may have read meanwhile).
        self._inflight = 0
        self._sending = False
        self._scheduled = False
        self._waiter: asyncio.Future[None] | None = None  # the task sleeping for work
        self._woken = False  # work arrived while the task was busy
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self.closed = False  # no more pushes are accepted
        self.overflowed = False
        self.peak = 0  # the most bytes ever buffered (queued + in flight)
        self.frames_sent = 0

    @property
    def direct(self) -> bool:
        """Frames go straight to the transport (no writer task)."""
        return self._wire is not None

    @property
    def buffered(self) -> int:
        return self._queued + self._inflight

    def push(self, item: F, size: int) -> bool:
        """Queue a data message (room events, state updates); sent by the next flush."""
        if not self._accept(item, size, self._data):
            return False
        if not self._scheduled:
            self._scheduled = True
            self._scheduler.schedule(self)
        return True

    def push_control(self, item: F, size: int) -> bool:
        """Queue a reply; sent at once, ahead of queued data."""
        if not self._accept(item, size, self._control):
            return False
        self._wake()
        return True

    def _accept(self, item: F, size: int, into: list[F]) -> bool:
        if self.closed:
            return False
        total = self._queued + self._inflight + size
        if total > self.max_bytes:
            if self._wire is not None:
                self._inflight = self._wire.pending()
                total = self._queued + self._inflight + size
            if total > self.max_bytes:
                self._overflow()
                return False
        into.append(item)
        self._queued += size
        if total > self.peak:
            self.peak = total
        return True

    def _overflow(self) -> None:
        self.closed = True
        self.overflowed = True
        self._control.clear()
        self._data.clear()
        self._queued = 0
        self._wake()
        try:
            self._on_overflow()
        except Exception:
            log.exception("on_overflow failed")

    def _wake(self) -> None:
        if self._wire is not None:
            self._flush()
            return
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        else:
            self._woken = True

    def wake(self) -> None:
        """The scheduler's call: send what is queued."""
        self._scheduled = False
        self._wake()

    def close(self) -> None:
        """Accept nothing more; what is queued is still sent (see `drained`)."""
        self.closed = True
        self._wake()

    def _idle(self) -> bool:
        return not self._sending and not self._control and not self._data

    def _release_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.set_result(None)

    async def drained(self) -> None:
        """Wait until everything queued has been handed to the transport."""
        if self._idle():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(fut)
        await fut

    def _take(self) -> list[F]:
        items = self._control + self._data if self._control else self._data
        self._control, self._data = [], []
        return items

    def _flush(self) -> None:
        """Wire mode: everything queued, as batch frames, into the transport now."""
        wire = self._wire
        assert wire is not None
        if self._control or self._data:
            items = self._take()
            queued, self._queued = self._queued, 0
            # Only this writer adds to the transport's buffer (besides uvicorn's rare control
            # frames), so what it held after the last flush bounds what it holds now: read it
            # again only when that could overflow.
            if self._inflight + queued > self.max_bytes:
                self._inflight = wire.pending()
            if self._inflight + queued > self.max_bytes:
                self.closed = self.overflowed = True
                self._release_drainers()
                try:
                    self._on_overflow()
                except Exception:
                    log.exception("on_overflow failed")
                return
            data, frames = self._scheduler.framed(items, self._frames)
            if wire.write_frames(data):
                self.frames_sent += frames
            else:
                self.closed = True  # the client is gone or closing: nothing more to send
            self._inflight = wire.pending()
        self._release_drainers()

    async def run(self) -> None:
        """The writer task (ASGI `send` mode only): send batches until closed and empty, or the
        client is gone."""
        assert self._send is not None and self._wire is None
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._woken:
                    self._waiter = loop.create_future()
                    await self._waiter
                self._woken = False
                if not self._control and not self._data:
                    self._release_drainers()
                    if self.closed:
                        return
                    continue
                items = self._take()
                self._inflight, self._queued = self._queued, 0
                self._sending = True
                for frame in self._frames(items):
                    await self._send(frame)
                    self.frames_sent += 1
                self._sending = False
                self._inflight = 0
                if self._control or self._data:
                    self._woken = True
                else:
                    self._release_drainers()
                    if self.closed:
                        return
        finally:
            self.closed = True
            self._sending = False
            self._inflight = self._queued = 0
            self._control, self._data = [], []
            self._release_drainers()

    def _frames(self, items: list[F]) -> list[F]:
        if len(items) == 1:
            return items
        frames: list[F] = []
        start, size = 0, 0
        for i, item in enumerate(items):
            if size and size + len(item) > MAX_FRAME_BYTES:
                frames.append(self._frame(items[start:i]))
                start, size = i, 0
            size += len(item)
        frames.append(self._frame(items[start:]))
        return frames
