"""A transport's write flow control (asyncio's `pause_writing` / `resume_writing`) as something
to await: a join's replay waits here for the client to read, rather than overflowing the
connection's write bound (server/hub/rooms.py, `replay`)."""

from __future__ import annotations

import asyncio


class WriteFlow:
    __slots__ = ("_resumed",)

    def __init__(self) -> None:
        self._resumed: asyncio.Future[None] | None = None  # set while the transport is paused

    def pause(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._resumed is None:
            self._resumed = loop.create_future()

    def resume(self) -> None:
        """Below the transport's low-water mark again, or the connection is gone."""
        fut, self._resumed = self._resumed, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def wait(self) -> None:
        if self._resumed is not None:
            await asyncio.shield(self._resumed)
