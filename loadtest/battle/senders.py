"""A battle run's gift senders: one WebSocket each, joined to both rooms, gifting until told to
stop; a sender whose server dies reconnects to another and retries its gift with the same tx
(as a real client does), so every debited gift is acknowledged in the end."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol import (
    SUBPROTOCOL_MSGPACK,
    Ack,
    ErrorReply,
    Hello,
    Join,
    Joined,
    SendGift,
    ServerMessage,
    Welcome,
    codec_for,
)

RETRYABLE = frozenset({"rate_limited", "unavailable", "internal_error"})
GIFTS = ("rose", "finger_heart", "doughnut")


class SenderError(RuntimeError):
    """A gift refused for a reason a retry cannot fix: the run is broken, not the server slow."""


@dataclass
class Sender:
    user: str
    token: str
    ws_urls: list[str]  # the first is this sender's server; the others are where it fails over
    rooms: tuple[str, str]
    acked: dict[str, tuple[str, str]] = field(default_factory=dict)  # tx -> (room, gift)
    reconnects: int = 0
    retries: int = 0
    duplicates: int = 0  # acks of a resent tx the server had already debited (spent once, M2)
    _ws: ClientConnection | None = None
    _codec = codec_for(SUBPROTOCOL_MSGPACK)
    _ids = itertools.count(1)

    async def _connect(self) -> ClientConnection:
        last: Exception | None = None
        for url in self.ws_urls:
            try:
                ws = await connect(url, subprotocols=[SUBPROTOCOL_MSGPACK], open_timeout=10,
                                   max_size=2**22)
                await ws.send(self._codec.encode_client(Hello(v=1, client="battle",
                                                              token=self.token)))
                await self._expect(ws, lambda m: isinstance(m, Welcome))
                for room in self.rooms:
                    rid = f"j{next(self._ids)}"
                    await ws.send(self._codec.encode_client(Join(id=rid, room=room)))
                    await self._expect(ws, lambda m, r=rid: isinstance(m, Joined) and m.id == r)
                return ws
            except (OSError, ConnectionClosed, TimeoutError) as exc:
                last = exc
                self.ws_urls = [*self.ws_urls[1:], url]  # try the next server first next time
        raise ConnectionError(f"{self.user}: no server accepted a connection ({last})")

    async def _expect(self, ws: ClientConnection, match: Callable[[ServerMessage], bool]
                      ) -> ServerMessage:
        async with asyncio.timeout(30):
            while True:
                for msg in self._codec.decode_server(await ws.recv()):
                    if match(msg):
                        return msg

    async def gift(self, room: str, tx: str, gift: str) -> None:
        """Send until acknowledged (the same tx on every attempt: debited at most once)."""
        while True:
            try:
                if self._ws is None:
                    self._ws = await self._connect()
                ws = self._ws
                await ws.send(self._codec.encode_client(
                    SendGift(id=tx, room=room, gift=gift, count=1, tx=tx)))
                reply = await self._expect(ws, lambda m: getattr(m, "id", None) == tx)
            except (OSError, ConnectionClosed, TimeoutError):
                # The server died (or the socket did): another one, same tx.
                self._ws = None
                self.reconnects += 1
                self.ws_urls = [*self.ws_urls[1:], self.ws_urls[0]]
                continue
            if isinstance(reply, Ack):
                self.acked[tx] = (room, gift)
                self.duplicates += reply.duplicate
                return
            assert isinstance(reply, ErrorReply)
            if reply.code not in RETRYABLE:
                raise SenderError(f"{self.user}: gift {tx} refused: {reply.code}")
            self.retries += 1
            await asyncio.sleep((reply.retry_ms or 100) / 1000)  # as the server asked

    async def run(self, until: float, interval_s: float, prefix: str) -> None:
        """Gift into both rooms in turn, one every `interval_s`, until `until` (time.time())."""
        n = 0
        next_at = time.monotonic()
        while time.time() < until:
            room = self.rooms[n % 2]
            await self.gift(room, f"{prefix}{self.user}-{n}", GIFTS[n % len(GIFTS)])
            n += 1
            next_at += interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # the sender's pace

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
