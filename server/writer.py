"""The per-connection writer: a bounded buffer of pre-encoded messages, flushed in batch frames.

Fan-out never awaits a client: it appends the same encoded bytes to each member's writer (`push`,
synchronous, O(1)) and moves on. Each writer has one long-lived task that sends whatever
accumulated as one batch frame. Data is flushed on a shared clock (`FlushScheduler`: one timer per
process per window, not one per event or per connection), so a connection's task wakes once per
window however many events arrived; replies (`push_control`: acks, errors, pongs, joined) wake it
at once and go ahead of queued data, so liveness never waits behind a backlog.

The bound counts queued bytes plus the frame being sent. A client that stops reading stalls its
send (uvicorn waits for the transport to drain), its queue grows, and the first push past
`max_bytes` drops the queue and calls `on_overflow` (the connection closes with 4008). Nothing
else waits for that client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from protocol.limits import MAX_SERVER_FRAME_BYTES

log = logging.getLogger("giftwire.writer")

F = TypeVar("F", bytes, str)

# Split batches well below the client's frame limit.
MAX_FRAME_BYTES = MAX_SERVER_FRAME_BYTES // 2


class FlushScheduler:
    """One timer per window for all writers with pending data."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._due: list[Writer[bytes] | Writer[str]] = []
        self._timer: asyncio.TimerHandle | None = None

    def schedule(self, writer: Writer[bytes] | Writer[str]) -> None:
        if self.window_s <= 0:
            writer.wake()
            return
        self._due.append(writer)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self._fire)

    def _fire(self) -> None:
        self._timer = None
        due, self._due = self._due, []
        for writer in due:
            writer.wake()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = []


class Writer(Generic[F]):
    def __init__(
        self,
        send: Callable[[F], Awaitable[None]],
        frame: Callable[[Sequence[F]], F],
        scheduler: FlushScheduler,
        *,
        max_bytes: int,
        on_overflow: Callable[[], None],
    ) -> None:
        self._send = send
        self._frame = frame
        self._scheduler = scheduler
        self.max_bytes = max_bytes
        self._on_overflow = on_overflow
        self._control: list[F] = []
        self._data: list[F] = []
        self._queued = 0  # bytes in _control + _data
        self._inflight = 0  # bytes of the frame being sent
        self._scheduled = False
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.closed = False  # no more pushes are accepted
        self.overflowed = False
        self.peak = 0  # the most bytes ever buffered (queued + in flight)
        self.frames_sent = 0

    @property
    def buffered(self) -> int:
        return self._queued + self._inflight

    def push(self, item: F, size: int) -> bool:
        """Queue a data message (room events, state updates); sent within the window."""
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
        self._wakeup.set()
        return True

    def _accept(self, item: F, size: int, into: list[F]) -> bool:
        if self.closed:
            return False
        total = self._queued + self._inflight + size
        if total > self.max_bytes:
            self._overflow()
            return False
        into.append(item)
        self._queued += size
        if total > self.peak:
            self.peak = total
        self._idle.clear()
        return True

    def _overflow(self) -> None:
        self.closed = True
        self.overflowed = True
        self._control.clear()
        self._data.clear()
        self._queued = 0
        self._wakeup.set()
        try:
            self._on_overflow()
        except Exception:
            log.exception("on_overflow failed")

    def wake(self) -> None:
        self._scheduled = False
        self._wakeup.set()

    def close(self) -> None:
        """Accept nothing more; what is queued is still sent (see `drained`)."""
        self.closed = True
        self._wakeup.set()

    async def drained(self) -> None:
        """Wait until everything queued has been handed to the transport."""
        await self._idle.wait()

    async def run(self) -> None:
        """The writer task: send batches until closed and empty, or the client is gone."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                if not self._control and not self._data:
                    self._idle.set()
                    if self.closed:
                        return
                    continue
                items = self._control + self._data if self._control else self._data
                self._control, self._data = [], []
                self._inflight, self._queued = self._queued, 0
                for frame in self._frames(items):
                    await self._send(frame)
                    self.frames_sent += 1
                self._inflight = 0
                if self._control or self._data:
                    self._wakeup.set()
                else:
                    self._idle.set()
                    if self.closed:
                        return
        finally:
            self.closed = True
            self._inflight = 0
            self._idle.set()

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
