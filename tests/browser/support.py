"""Helpers for the browser tests: protocol clients, a live room, a cuttable TCP proxy, the page."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import itertools
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol import (
    SUBPROTOCOL_MSGPACK,
    Ack,
    ComboEnd,
    ErrorReply,
    GiftEvent,
    Hello,
    Join,
    Joined,
    SendGift,
    ServerMessage,
    Welcome,
    codec_for,
)
from server.config import Config
from server.money import streams
from server.runtime import Runtime
from tests.support.servers import RunningServer, inprocess_server

_ids = itertools.count(1)


class Viewer:
    """A viewer's WebSocket session in one room; a reader task files every server message."""

    def __init__(self, ws: ClientConnection, room: str) -> None:
        self.ws = ws
        self.room = room
        self.codec = codec_for(SUBPROTOCOL_MSGPACK)
        self.messages: list[ServerMessage] = []
        self.changed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.closed = False
        self.retries = 0  # `unavailable` answers retried with the same tx

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                self.messages.extend(self.codec.decode_server(frame))
                self.changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self.changed.set()

    async def wait_for(self, find: Any) -> Any:
        while True:
            found = find()
            if found is not None:
                return found
            if self.closed:
                raise AssertionError("the viewer's connection closed while waiting")
            self.changed.clear()
            await self.changed.wait()

    def gifts(self) -> list[GiftEvent]:
        return [m for m in self.messages if isinstance(m, GiftEvent) and m.room == self.room]

    async def wait_gifts(self, n: int) -> list[GiftEvent]:
        await self.wait_for(lambda: True if len(self.gifts()) >= n else None)
        return self.gifts()

    async def gift(self, gift: str, count: int = 1, combo: str | None = None) -> Ack:
        tx = f"t{uuid.uuid4().hex}"
        request = self.codec.encode_client(
            SendGift(room=self.room, gift=gift, count=count, tx=tx, combo=combo)
        )
        for _attempt in range(5):
            seen = len(self.messages)
            await self.ws.send(request)
            reply = await self.wait_for(functools.partial(self._reply, tx, seen))
            if isinstance(reply, Ack):
                return reply
            # docs/protocol.md: `unavailable` means "retry the same tx after retry_ms"; the
            # gift must still be spent, and shown, exactly once. (The wait is the protocol's
            # instruction to every client, not a test synchronisation.)
            assert reply.code == "unavailable", reply
            self.retries += 1
            await asyncio.sleep((reply.retry_ms or 0) / 1000)
        raise AssertionError(f"gift {tx} still unavailable after 5 attempts")

    def _reply(self, tx: str, since: int) -> Ack | ErrorReply | None:
        for m in self.messages[since:]:
            if isinstance(m, Ack | ErrorReply) and m.tx == tx:
                return m
        return None

    async def combo_end(self, combo: str) -> None:
        await self.ws.send(self.codec.encode_client(ComboEnd(room=self.room, combo=combo)))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


@contextlib.asynccontextmanager
async def viewer(ws_url: str, token: str, room: str) -> AsyncIterator[Viewer]:
    ws = await connect(ws_url, subprotocols=[SUBPROTOCOL_MSGPACK], open_timeout=30,
                       max_size=2**22)
    v = Viewer(ws, room)
    v.reader = asyncio.create_task(v._read())
    try:
        await ws.send(v.codec.encode_client(Hello(v=1, client="browser-test", token=token)))
        await v.wait_for(lambda: next((m for m in v.messages if isinstance(m, Welcome)), None))
        rid = f"j{next(_ids)}"
        await ws.send(v.codec.encode_client(Join(id=rid, room=room)))
        joined = await v.wait_for(lambda: next(
            (m for m in v.messages if getattr(m, "id", None) == rid), None
        ))
        assert isinstance(joined, Joined), joined
        yield v
    finally:
        await v.close()


async def live_room(rt: Runtime, room: str, creator: str = "creator1",
                    goal: tuple[str, int] | None = None) -> None:
    await streams.go_live(rt, room, creator, f"{room} stream",
                          on_change=rt.components.get("on_room_change"))
    if goal is not None:
        await rt.components["realtime"].state.set_goal(room, *goal)


async def fund(rt: Runtime, user: str, coins: int) -> None:
    result = await rt.components["wallet"].grant(user, coins, f"g{next(_ids)}", "admin")
    assert result.ok, result


class CuttableProxy:
    """A TCP proxy between the browser and the server, to cut connections like a network blip.

    `cut()` aborts every open connection (RST: no close frame, as when Wi-Fi drops); while
    `blocked`, new connections are accepted and dropped at once, as an unreachable server is.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.blocked = False
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [asyncio.create_task(self._pump(reader, up_writer)),
                 asyncio.create_task(self._pump(up_reader, writer))]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        self._tasks.difference_update(pumps)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            # One side ended: end both, so neither half stays open.
            writer.transport.abort()


async def open_overlay(page: Page, base_url: str, token: str, query: str = "") -> None:
    await page.goto(f"{base_url}/overlay?token={token}&{query}")
    await wait_page(page, "window.giftwireOverlay?.state === 'joined'")


async def record_alerts(page: Page) -> None:
    """Record, from the real DOM, every alert element the page adds to the stage."""
    await page.evaluate("""() => {
      window.domAlerts = [];
      new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) {
          if (n.classList?.contains('gw-alert')) {
            window.domAlerts.push({eids: n.dataset.eids, gift: n.dataset.gift,
                                   text: n.querySelector('.gw-card').textContent});
          }
        }
      }).observe(document.getElementById('gw-stage'), {childList: true});
    }""")


async def wait_page(page: Page, condition: str, timeout_ms: float = 30_000) -> None:
    """wait_for_function, with the overlay's state in the failure message."""
    try:
        await page.wait_for_function(condition, timeout=timeout_ms)
    except PlaywrightTimeout:
        state = await page.evaluate(
            "(() => { const h = window.giftwireOverlay; return h && {state: h.state,"
            " detail: h.detail, lastSeq: h.lastSeq, stats: h.stats, shownTotal: h.shownTotal,"
            " queued: h.queued, dropped: h.dropped, merged: h.merged, errors: h.errors,"
            " seqs: h.shown.map((a) => a.seq).join(','), dom: (window.domAlerts || []).length};"
            " })()"
        )
        raise AssertionError(f"timed out waiting for {condition}; overlay: {state}") from None


async def shown(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate(
        "window.giftwireOverlay.shown.map((a) => ({eids: a.eids, seq: a.seq, gift: a.gift,"
        " count: a.count, coins: a.coins, name: a.name, combo: a.combo}))"
    )
    return result


@contextlib.asynccontextmanager
async def watched_server(config: Config) -> AsyncIterator[RunningServer]:
    """inprocess_server, plus a dump of every task's stack if stopping it hangs: a stop that
    never finishes has no traceback of its own (seen rarely under load; see the report)."""
    async def dump_after(seconds: float) -> None:
        await asyncio.sleep(seconds)  # a watchdog, not a synchronisation: it only reports
        out = io.StringIO()
        for task in asyncio.all_tasks():
            print(f"--- task {task.get_name()}: {task.get_coro()}", file=out)
            task.print_stack(limit=12, file=out)
        print(f"server stop hangs after {seconds}s; tasks:\n{out.getvalue()}", file=sys.stderr)

    cm = inprocess_server(config)
    running = await cm.__aenter__()
    try:
        yield running
    finally:
        watchdog = asyncio.create_task(dump_after(15))
        try:
            await cm.__aexit__(None, None, None)
        finally:
            watchdog.cancel()
