"""The shared Redis pool queues a burst instead of failing it; past its wait deadline a request is
told `unavailable` (HTTP 503 + Retry-After, WebSocket error + retry_ms), never a 500 or a 1011,
and the log gets a WARNING line, never a traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect

from protocol import SUBPROTOCOL_MSGPACK, ErrorReply, Hello, Welcome
from server.config import Config
from tests.conftest import with_config
from tests.hub.support import Client, grant, open_client
from tests.support.servers import RunningServer, inprocess_server


@pytest.fixture
async def small_pool(config: Config, redis: object, pool: object) -> AsyncIterator[RunningServer]:
    cfg = with_config(config, redis_max_connections=4, redis_pool_wait_s=60.0)
    async with inprocess_server(cfg) as running:
        yield running


@pytest.fixture
async def one_connection(config: Config, redis: object, pool: object
                         ) -> AsyncIterator[RunningServer]:
    """A pool of one connection and a short wait: holding that connection makes any other
    command miss the deadline, deterministically."""
    cfg = with_config(config, redis_max_connections=1, redis_pool_wait_s=0.05)
    async with inprocess_server(cfg) as running:
        yield running


async def test_hundreds_of_concurrent_requests_on_a_small_pool_all_succeed(
    small_pool: RunningServer,
) -> None:
    rt = small_pool.runtime
    await grant(rt, "many", 77)
    token = rt.issuer.mint("many", "viewer")
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=small_pool.base_url, limits=limits,
                                 timeout=60) as http:
        replies = await asyncio.gather(*(
            http.get("/api/me/balance", headers={"Authorization": "Bearer " + token})
            for _ in range(400)
        ))
    assert [r.status_code for r in replies] == [200] * 400
    assert {r.json()["coins"] for r in replies} == {77}
    # WebSocket hellos check their tokens through the same pool: all are welcomed.
    clients = await asyncio.gather(*(
        open_client(small_pool.ws_url, rt.issuer.mint(f"v{i}", "viewer")) for i in range(50)
    ))
    await asyncio.gather(*(c.close() for c in clients))


async def test_past_the_pool_deadline_requests_are_told_unavailable(
    one_connection: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rt = one_connection.runtime
    token = rt.issuer.mint("late", "viewer")
    held = await rt.redis.connection_pool.get_connection()
    ws = await connect(one_connection.ws_url, subprotocols=[SUBPROTOCOL_MSGPACK])
    client = Client(ws, SUBPROTOCOL_MSGPACK)
    client.start()
    try:
        auth = {"Authorization": "Bearer " + token}
        async with httpx.AsyncClient(base_url=one_connection.base_url) as http:
            replies = [
                await http.get("/api/me/transactions", headers=auth),
                await http.post("/api/gifts", headers=auth, json={}),
                await http.get("/overlay", params={"token": token}),
            ]
            # Balance reads take no pooled connection: their revocation lookup and wallet read
            # are one batch of the script runner's own connection (server/web/api.py).
            balance = await http.get("/api/me/balance", headers=auth)
        for r in replies:
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "unavailable"
            assert r.headers["retry-after"] == "1"
        assert balance.status_code == 200 and balance.json()["coins"] == 0, balance.text

        await client.send(Hello(id="h1", v=1, client="test", token=token))
        refused = await client.reply("h1")
        assert isinstance(refused, ErrorReply), refused
        assert refused.code == "unavailable" and refused.retry_ms
        # The connection stays open: once Redis can answer, the same socket says hello again.
        await rt.redis.connection_pool.release(held)
        held = None
        await client.send(Hello(id="h2", v=1, client="test", token=token))
        await client.wait(lambda ms: [m for m in ms if isinstance(m, Welcome)])
        assert client.closed_code is None
    finally:
        if held is not None:
            await rt.redis.connection_pool.release(held)
        await client.close()
    assert [r for r in caplog.records if r.exc_info] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("unavailable" in m for m in warnings), warnings
    assert any("token check failed" in m for m in warnings), warnings


async def test_a_bug_is_a_500_problem_with_its_traceback_logged(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The one failure that is not turned into a stable refusal still answers in the API's own
    shape, and is not hidden: its traceback is logged."""
    rt = server.runtime
    rt.components["wallet"] = None  # a broken component: every balance read is a bug now
    token = rt.issuer.mint("buggy", "viewer")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        r = await http.get("/api/me/balance", headers={"Authorization": "Bearer " + token})
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "internal_error"
    assert any(rec.exc_info and rec.exc_info[0] is AttributeError for rec in caplog.records)


def test_a_backend_outage_is_one_warning_line_and_a_bug_keeps_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from server.runtime import log_failure

    logger = logging.getLogger("giftwire.test")
    for exc in (ConnectionError("redis down"), ValueError("a bug")):
        try:
            raise exc
        except Exception as caught:
            log_failure(logger, "spend t1", caught)
    down, bug = caplog.records[-2:]
    assert (down.levelname, down.exc_info) == ("WARNING", None)
    assert "backend unavailable" in down.getMessage()
    assert bug.levelname == "ERROR" and bug.exc_info is not None
