"""When did a message arrive? Rate limits count by arrival, not by processing (issue: a server
stall turned an honest client's steady stream into a "burst" and closed it 4009).

User space only learns of bytes when the event loop reads them. A loop that was stalled reads
everything the kernel took meanwhile at once, and cannot tell when each byte came. The clock
below ticks while the loop is responsive; a read spreads its messages evenly, by byte offset,
over the time since the later of the connection's previous read and the loop's last tick. A
responsive loop makes that window a few milliseconds (a burst stays a burst), a stall makes it
the stall (a steady stream stays steady, a flood sent during it is still a flood).
"""

from __future__ import annotations

import asyncio
import time

TICK_S = 0.05


class LoopClock:
    """The last moment the event loop ran a tick: before it, the loop was responsive."""

    def __init__(self) -> None:
        self.last_tick = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Tick on this loop from now on (idempotent; a new loop, e.g. in tests, restarts it)."""
        if self._loop is not loop:
            self._loop = loop
            self._tick(loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop or loop.is_closed():
            return
        self.last_tick = time.monotonic()
        loop.call_later(TICK_S, self._tick, loop)


CLOCK = LoopClock()  # one per process: every connection of every server in it reads this


class ArrivalWindow:
    """The times a connection's current read may have arrived over."""

    __slots__ = ("clock", "end", "last_read", "start")

    def __init__(self, clock: LoopClock) -> None:
        self.clock = clock
        self.last_read = self.start = self.end = time.monotonic()

    def read(self) -> None:
        """A read just happened: its bytes arrived after the previous read and, if the loop was
        responsive until its last tick, after that tick."""
        now = time.monotonic()
        self.start = max(self.last_read, self.clock.last_tick)
        self.end = self.last_read = now

    def at(self, fraction: float) -> float:
        """The estimated arrival of the byte `fraction` of the way through the read."""
        return self.start + (self.end - self.start) * fraction
