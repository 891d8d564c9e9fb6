"""What a real client does when its connection or its gift's answer is lost.

A member whose server went away reconnects (to the next server URL, with backoff against a dead
one) and resumes from the room's history; a gift without an answer (its connection dropped, or
the server said `unavailable`) is sent again with the same tx until it is answered or a deadline
passes. Its first answer is its outcome: `duplicate` when the lost attempt had been charged, so
what the clients count is what Redis and Postgres hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

from loadtest.client import Member

Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


class Reconnects:
    def __init__(self, urls: tuple[str, ...], enabled: bool, spawn: Spawn,
                 stopping: Callable[[], bool]) -> None:
        self.urls = urls
        self.enabled = enabled  # reconnect at all (chaos); answers are awaited either way
        self._spawn = spawn  # the worker's, so a failing reconnect task fails the verdict
        self._stopping = stopping
        self.under_way: dict[Member, asyncio.Task[None]] = {}
        self.count = 0

    def start(self, m: Member, deadline: float) -> asyncio.Task[None]:
        task = self.under_way.get(m)
        if task is None:
            task = self._spawn(self._reconnect(m, deadline), f"reconnect-{m.spec.user}")
            self.under_way[m] = task
            task.add_done_callback(lambda _t, m=m: self.under_way.pop(m, None))
        return task

    async def ensure_connected(self, m: Member, deadline: float) -> None:
        # Also waits for a reconnect already under way (its join may still be in flight).
        if not m.connected or m in self.under_way:
            await asyncio.shield(self.start(m, deadline))

    async def until_answered(self, m: Member, deadline: float) -> None:
        """Until the gift in flight has its answer, resending the same tx (module doc)."""
        await m.wait_ack()
        while m.pending is not None and not self._stopping() and time.monotonic() < deadline:
            if m.retry_ms:
                await asyncio.sleep(m.retry_ms / 1000)  # the server's own back-off hint
                m.retry_ms = 0
            if not m.connected:
                if not self.enabled:
                    return
                await self.ensure_connected(m, deadline)
                if not m.connected:
                    return
            m.resend_pending()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(m.wait_ack(), max(0.0, deadline - time.monotonic()))

    async def _reconnect(self, m: Member, deadline: float) -> None:
        urls = self.urls
        attempt = 0
        while not m.connected and time.monotonic() < deadline and not self._stopping():
            m.url = urls[(urls.index(m.url) + 1) % len(urls)] if m.url in urls else urls[0]
            try:
                await m.open(5.0)
                self.count += 1
                return
            except Exception:
                attempt += 1
                await asyncio.sleep(min(1.0, 0.05 * 2**attempt))  # backoff against a dead server
