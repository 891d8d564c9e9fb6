"""The server's own WebSocket keepalive: a ping (opcode 9) every `ws_ping_interval_s`, and the
connection closed 1011 when one goes unanswered for `ws_ping_timeout_s` (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable


class Keepalive:
    __slots__ = ("_interval", "_loop", "_payload", "_ping_timer", "_pong_timer", "_send_ping",
                 "_timed_out", "_timeout")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float | None,
                 timeout_s: float | None, send_ping: Callable[[bytes], bool],
                 timed_out: Callable[[], None]) -> None:
        self._loop = loop
        self._interval = interval_s
        self._timeout = timeout_s
        self._send_ping = send_ping  # False when the connection is closing
        self._timed_out = timed_out
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._payload: bytes | None = None

    def start(self) -> None:
        if self._interval:
            self._ping_timer = self._loop.call_later(self._interval, self._ping)

    def stop(self) -> None:
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = None
        self._payload = None

    def pong(self, payload: bytes) -> None:
        """A pong arrived: if it answers the ping in flight, the next ping is scheduled."""
        if self._payload is None or payload != self._payload:
            return  # unsolicited or stale
        self._payload = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
            self.start()

    def _ping(self) -> None:
        self._ping_timer = None
        # A random payload tells this ping's pong from a stale or unsolicited one.
        self._payload = struct.pack("!I", random.getrandbits(32))
        if not self._send_ping(self._payload):
            return
        if self._timeout:
            self._pong_timer = self._loop.call_later(self._timeout, self._expired)
        else:
            self.start()

    def _expired(self) -> None:
        self._pong_timer = None
        self._payload = None
        self._timed_out()
