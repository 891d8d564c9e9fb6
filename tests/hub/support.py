"""WebSocket test clients for the hub tests: real sockets, the protocol's own codecs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    ClientMessage,
    ComboProgress,
    GiftEvent,
    Hello,
    Join,
    Joined,
    ServerMessage,
    Welcome,
    codec_for,
)

_ids = itertools.count(1)


class Client:
    """A connected, hello'd client; a reader task files every server message in `messages`."""

    def __init__(self, ws: ClientConnection, subprotocol: str) -> None:
        self.ws = ws
        self.codec = codec_for(subprotocol)
        self.messages: list[ServerMessage] = []
        self._changed = asyncio.Event()
        self.closed_code: int | None = None
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def stop_reading(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                self.messages.extend(self.codec.decode_server(frame))
                self._changed.set()
        except ConnectionClosed:
            pass
        code = self.ws.close_code
        self.closed_code = code if code is not None else 1006
        self._changed.set()

    async def send(self, msg: ClientMessage) -> None:
        await self.ws.send(self.codec.encode_client(msg))

    async def wait(self, predicate: Callable[[list[ServerMessage]], Any]) -> Any:
        """Wait until predicate(messages) is truthy (or the socket closed: then fail)."""
        while True:
            result = predicate(self.messages)
            if result:
                return result
            if self.closed_code is not None:
                raise AssertionError(f"closed with {self.closed_code} while waiting")
            self._changed.clear()
            await self._changed.wait()

    async def wait_closed(self) -> int:
        while self.closed_code is None:
            self._changed.clear()
            await self._changed.wait()
        return self.closed_code

    async def reply(self, request_id: str) -> ServerMessage:
        def find(msgs: list[ServerMessage]) -> ServerMessage | None:
            for m in msgs:
                if getattr(m, "id", None) == request_id:
                    return m
            return None

        result: ServerMessage = await self.wait(find)
        return result

    async def join(self, room: str, after: int | None = None, epoch: str | None = None
                   ) -> Joined:
        rid = f"j{next(_ids)}"
        await self.send(Join(id=rid, room=room, after=after, epoch=epoch))
        reply = await self.reply(rid)
        assert isinstance(reply, Joined), reply
        return reply

    def events(self, room: str | None = None) -> list[GiftEvent | ComboProgress]:
        return [
            m for m in self.messages
            if isinstance(m, GiftEvent | ComboProgress) and (room is None or m.room == room)
        ]

    async def wait_events(self, n: int, room: str | None = None) -> list[GiftEvent | ComboProgress]:
        await self.wait(lambda _: len(self.events(room)) >= n)
        return self.events(room)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def open_client(
    ws_url: str, token: str, *, binary: bool = True, query_token: bool = False, **kw: Any
) -> Client:
    sub = SUBPROTOCOL_MSGPACK if binary else SUBPROTOCOL_JSON
    url = f"{ws_url}?token={token}" if query_token else ws_url
    ws = await connect(url, subprotocols=[sub], open_timeout=30, max_size=2**22, **kw)
    client = Client(ws, sub)
    await client.send(Hello(v=1, client="test", token=None if query_token else token))
    client.start()
    welcome = await client.wait(lambda msgs: msgs and msgs[0])
    assert isinstance(welcome, Welcome), welcome
    return client


@contextlib.asynccontextmanager
async def clients(ws_url: str, tokens: list[str], **kw: Any) -> AsyncIterator[list[Client]]:
    opened = await asyncio.gather(*(open_client(ws_url, t, **kw) for t in tokens))
    try:
        yield list(opened)
    finally:
        await asyncio.gather(*(c.close() for c in opened))


async def setup_room(rt: Any, room: str, creator: str = "creator1") -> None:
    from server.money import streams

    await streams.go_live(rt, room, creator, f"{room} stream",
                          on_change=rt.components.get("on_room_change"))


async def grant(rt: Any, user: str, coins: int) -> None:
    wallet = rt.components["wallet"]
    result = await wallet.grant(user, coins, f"grant-{user}-{next(_ids)}", "admin")
    assert result.ok, result
