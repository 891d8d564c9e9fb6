"""The two ways from a writer to the client: straight into the transport through giftwire's own
WebSocket protocol (server/edge/transport/websocket.py, what `serve` runs) and, under any other
ASGI server, ASGI `send` from a writer task. Both deliver every event in order through both
codecs, and answer requests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

from protocol import Ping, Pong
from server.auth import TokenIssuer
from server.config import Config
from server.runtime import Runtime
from server.serve import DrainingServer, uvicorn_config
from server.storage.embedded import free_port
from tests.hub.support import Client, open_client, setup_room
from tests.support.servers import RunningServer, inprocess_server


class _PlainReceive:
    """Hands the app a scope without giftwire's edge extension, as any other ASGI server would:
    the app cannot reach the transport and must use `send`."""

    def __init__(self, app: Any) -> None:
        self.app = app  # what the drain hook looks for (server.serve._find_starlette)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app({**scope, "extensions": {}}, receive, send)


class _Server(DrainingServer):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@contextlib.asynccontextmanager
async def asgi_send_server(config: Config) -> AsyncIterator[RunningServer]:
    config = dataclasses.replace(config, host="127.0.0.1", port=free_port())
    uv_config = uvicorn_config(config)
    app = uv_config.app
    uv_config.app = _PlainReceive(app)
    server = _Server(uv_config, config.drain_timeout_s)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)  # polling uvicorn's own flag: it offers no event
        yield RunningServer(config, f"http://127.0.0.1:{config.port}", app=app, server=server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


async def _publish(rt: Runtime, room: str, tx: str) -> None:
    seq = await rt.components["realtime"].state.publish_gift(
        room, sender="s", name="S", tx=tx, gift="rose", count=1, coins=1
    )
    assert seq is not None


async def _deliver_and_answer(server: RunningServer, issuer: TokenIssuer, *, direct: bool
                              ) -> None:
    rt = server.runtime
    realtime = rt.components["realtime"]
    await setup_room(rt, "r")
    viewers: list[Client] = []
    try:
        for i in range(6):
            viewers.append(await open_client(server.ws_url, issuer.mint(f"v{i}", "viewer"),
                                             binary=i % 2 == 0))
        assert len(realtime.connections) == 6
        assert all(c.writer.direct is direct for c in realtime.connections)
        writer_tasks = [t for t in asyncio.all_tasks()
                        if getattr(t.get_coro(), "__qualname__", "") == "Writer.run"]
        assert len(writer_tasks) == (0 if direct else 6)
        for v in viewers:
            await v.join("r")
        sent = 0
        for _ in range(5):
            await asyncio.gather(*(_publish(rt, "r", f"t{sent + i}") for i in range(40)))
            sent += 40
            await viewers[0].send(Ping(id=f"p{sent}", t=sent))
        for v in viewers:
            events = await v.wait_events(sent)
            assert [e.seq for e in events] == list(range(1, sent + 1))
        await viewers[0].reply(f"p{sent}")
        pongs = [m for m in viewers[0].messages if isinstance(m, Pong)]
        assert [p.id for p in pongs] == [f"p{n}" for n in range(40, sent + 1, 40)]
    finally:
        await asyncio.gather(*(v.close() for v in viewers))


async def test_the_transport_is_written_directly_in_order_both_codecs(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    await _deliver_and_answer(server, issuer, direct=True)


async def test_without_the_transport_asgi_send_delivers_the_same(
    config: Config, redis: Any, pool: Any, issuer: TokenIssuer
) -> None:
    async with asgi_send_server(config) as server:
        await _deliver_and_answer(server, issuer, direct=False)


async def test_accepted_sockets_have_their_send_buffer_capped(
    config: Config, redis: Any, pool: Any, issuer: TokenIssuer
) -> None:
    """D2: Linux autotunes a socket's send buffer up to megabytes, all of it before the writer's
    bound sees a byte; the configured SO_SNDBUF caps it (and stops the autotuning)."""
    sndbuf = 24 * 1024
    cfg = dataclasses.replace(config, socket_sndbuf=sndbuf)
    async with inprocess_server(cfg) as server:
        realtime = server.runtime.components["realtime"]
        viewer = await open_client(server.ws_url, issuer.mint("v", "viewer"))
        try:
            (conn,) = realtime.connections
            assert conn.writer.direct
            fd = conn.edge.transport.get_extra_info("socket").fileno()
            # Read it back through a socket object of our own on the same file descriptor.
            with socket.socket(fileno=os.dup(fd)) as sock:
                got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            # Linux reports twice the value set (it counts its bookkeeping); others the value.
            assert got in (sndbuf, 2 * sndbuf)
        finally:
            await viewer.close()
