"""The honest pair: a viewer gifting at a steady rate and a receiver in the same room, timing
acks (send -> ack) and deliveries (send -> the receiver's event), in one process and one clock."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol import SUBPROTOCOL_MSGPACK, Ack, GiftEvent, Hello, Join, Ping, SendGift, codec_for

CODEC = codec_for(SUBPROTOCOL_MSGPACK)


def p99_ms(samples: list[float]) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2)


@dataclass
class Window:
    """What the pair saw during one measured window."""

    sent: int = 0
    acked: int = 0
    refused: int = 0
    events: int = 0
    ack_s: list[float] = field(default_factory=list)
    event_s: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    # (seconds into the window the gift was sent, its ack latency): where the tail came from,
    # one stall early in the window (a burst let through at once) or spread over it.
    ack_at: list[tuple[float, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"sent": self.sent, "acked": self.acked, "refused": self.refused,
                "events": self.events, "lost": max(0, self.acked - self.events),
                "ack_p99_ms": p99_ms(self.ack_s), "event_p99_ms": p99_ms(self.event_s),
                "ack_worst": [(round(at, 2), round(s * 1000, 1))
                              for at, s in sorted(self.ack_at, key=lambda x: -x[1])[:4]]}


class HonestPair:
    def __init__(self, ws_url: str, sender_token: str, receiver_token: str, room: str) -> None:
        self.ws_url, self.room = ws_url, room
        self.tokens = (sender_token, receiver_token)
        self._ids = itertools.count()
        self._sender: ClientConnection | None = None
        self._receiver: ClientConnection | None = None
        self._sent_at: dict[str, float] = {}
        # Every gift sent, in order: events come in the same order (one sender in the room), an
        # event may come before its ack, and a refused gift has none.
        self._order: deque[tuple[str, float]] = deque()
        self._refused: set[str] = set()
        self._window = Window()
        self._readers: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    async def __aenter__(self) -> HonestPair:
        self._sender = await self._open(self.tokens[0])
        self._receiver = await self._open(self.tokens[1])
        self._readers = [asyncio.create_task(self._read_acks()),
                         asyncio.create_task(self._read_events())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for ws in (self._sender, self._receiver):
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()

    async def _open(self, token: str) -> ClientConnection:
        ws = await connect(self.ws_url, subprotocols=[SUBPROTOCOL_MSGPACK],  # type: ignore[list-item]
                           open_timeout=30)
        await ws.send(CODEC.encode_client(Hello(v=1, client="hostile-pair", token=token)))
        await ws.recv()  # welcome
        await ws.send(CODEC.encode_client(Join(id="j", room=self.room)))
        await ws.recv()  # joined
        return ws

    async def measure(self, seconds: float, rate: float) -> dict[str, Any]:
        """Gift at `rate` per second for `seconds`, then wait briefly for the last replies."""
        self._window = window = Window()
        assert self._sender is not None and self._receiver is not None
        # An honest client keeps its heartbeat: the receiver never sends otherwise and would be
        # closed as idle (4010) in a long run.
        for ws in (self._sender, self._receiver):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(CODEC.encode_client(Ping(id=f"hb{next(self._ids)}")))
        t0 = time.monotonic()
        n = int(seconds * rate)
        for i in range(n):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))  # the client's pace
            tx = f"h{next(self._ids)}"
            self._sent_at[tx] = sent = time.monotonic()
            self._order.append((tx, sent))
            window.sent += 1
            with contextlib.suppress(ConnectionClosed):
                await self._sender.send(CODEC.encode_client(
                    SendGift(id=tx, room=self.room, gift="rose", count=1, tx=tx)))
        deadline = time.monotonic() + 5.0  # grace for the last replies and events
        while (window.acked + window.refused < window.sent or window.events < window.acked) \
                and (left := deadline - time.monotonic()) > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return window.summary()

    async def _read_acks(self) -> None:
        assert self._sender is not None
        async for frame in self._sender:
            now = time.monotonic()
            for msg in CODEC.decode_server(frame):
                tx = getattr(msg, "id", None) or ""
                sent = self._sent_at.pop(tx, None)
                if sent is None:
                    continue
                if isinstance(msg, Ack):
                    self._window.acked += 1
                    self._window.ack_s.append(now - sent)
                    self._window.ack_at.append((sent - self._window.started, now - sent))
                else:
                    self._window.refused += 1
                    self._refused.add(tx)
            self._changed.set()

    async def _read_events(self) -> None:
        assert self._receiver is not None
        async for frame in self._receiver:
            now = time.monotonic()
            for msg in CODEC.decode_server(frame):
                if not isinstance(msg, GiftEvent):
                    continue
                while self._order and self._order[0][0] in self._refused:
                    self._refused.discard(self._order.popleft()[0])
                if self._order:
                    self._window.events += 1
                    self._window.event_s.append(now - self._order.popleft()[1])
            self._changed.set()
