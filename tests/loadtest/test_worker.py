"""The load tester's own failures are seen: a worker task that raises fails the verdict, and
sending on a connection the server is closing is a refused send, not an exception."""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from loadtest.report import verdict_ok
from loadtest.worker import GiftMix, Worker, WorkerPlan
from loadtest.wsclient import WsConnection
from protocol import SUBPROTOCOL_MSGPACK

CLEAN_RUN: dict[str, Any] = {
    "aborted": None, "deliveries_lost": 0, "deliveries_duplicated": 0,
    "deliveries_out_of_order": 0, "gifts_accepted": 1, "senders": 1, "connections": 2,
    "deliveries_expected": 10,
    "ledger": {"consistent": True}, "worker_failures": [],
}


def _worker() -> Worker:
    plan = WorkerPlan(
        index=3, urls=("ws://127.0.0.1:1/ws",), conns=(),
        mix=GiftMix(("rose", 1), None, ("lion", 29999), 0.0, 0.0), rate=0.0,
        duration_s=1.0, warmup_s=0.0, settle_s=1.0, reconnect=True,
    )
    parent, child = multiprocessing.Pipe()
    parent.close()
    return Worker(plan, child)


async def test_an_exception_in_a_worker_task_is_recorded_and_fails_the_verdict() -> None:
    worker = _worker()

    async def broken() -> None:
        raise RuntimeError("a bug in the load tester")

    task = worker._spawn(broken(), "gift-u1")
    await asyncio.gather(task, return_exceptions=True)
    result = worker._result(None)
    assert result.failures == ["gift-u1: RuntimeError: a bug in the load tester"]
    assert verdict_ok(CLEAN_RUN)
    assert not verdict_ok({**CLEAN_RUN, "worker_failures": ["worker 3: " + result.failures[0]]})
    # Nor does a run in which no member was held to delivery pass.
    assert not verdict_ok({**CLEAN_RUN, "deliveries_expected": 0})


async def test_a_cancelled_worker_task_is_not_a_failure() -> None:
    worker = _worker()
    task = worker._spawn(asyncio.Event().wait(), "go-slow")
    await asyncio.sleep(0)  # let it start waiting
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert worker._result(None).failures == []


class _SendsAfterEachChunk(WsConnection):
    """Sends a frame right after each chunk from the server is processed: after the chunk that
    holds the server's close frame, the connection is closing but its socket not yet gone."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.after_close: list[bool] = []

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.is_open and not self.closed:
            self.after_close.append(self.send(b"\x80"))


async def test_sending_while_the_server_closes_is_refused_not_raised() -> None:
    async def close_at_once(ws: ServerConnection) -> None:
        await ws.close(1001, "going away")

    closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
    async with serve(close_at_once, "127.0.0.1", 0, subprotocols=[SUBPROTOCOL_MSGPACK]) as srv:
        port = srv.sockets[0].getsockname()[1]
        conn = _SendsAfterEachChunk(
            f"ws://127.0.0.1:{port}/ws", SUBPROTOCOL_MSGPACK, lambda _b: None,
            lambda code: closed.set_result(code),
        )
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: conn, "127.0.0.1", port)
        assert await asyncio.wait_for(closed, 10) == 1001
    assert conn.after_close == [False]
    assert conn.send(b"\x80") is False  # and after the socket is gone
