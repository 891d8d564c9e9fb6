"""The operator view's JSON over HTTP: admin tokens only, the deployment from Redis and the
processes' heartbeats, reconcile started from it with its result stored in Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from protocol import SUBPROTOCOL_JSON
from server.auth import TokenIssuer
from server.config import Config
from server.runtime import Runtime
from server.web.admin.status import deployment_status
from tests.hub.support import grant, open_client, setup_room
from tests.support.servers import RunningServer, inprocess_server


@pytest.fixture
async def server(config: Config, redis: Redis, pool: asyncpg.Pool) -> AsyncIterator[RunningServer]:
    """Without its flusher: ledger entries stay in the streams until a test drains them."""
    async with inprocess_server(dataclasses.replace(config, run_flusher=False)) as running:
        yield running


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _status(server: RunningServer, token: str) -> dict[str, Any]:
    # A fresh heartbeat first, so the test waits on nothing.
    await server.runtime.components["heartbeat"].beat()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        r = await http.get("/api/admin/status", headers=_bearer(token))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _reconciled(rt: Runtime) -> None:
    await asyncio.gather(*rt.components.get("admin_reconciles", ()))


async def test_only_admin_tokens_see_or_run_anything(server: RunningServer,
                                                     issuer: TokenIssuer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for role in ("viewer", "creator"):
            token = issuer.mint("u1", role)
            for method, path in (("GET", "/api/admin/status"), ("POST", "/api/admin/reconcile"),
                                 ("GET", f"/admin?token={token}")):
                r = await http.request(method, path, headers=_bearer(token))
                assert r.status_code == 403, (role, path, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["code"] == "forbidden"
        for path in ("/api/admin/status", "/admin"):
            r = await http.get(path)
            assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
        r = await http.get(f"/admin?token={issuer.mint('ops', 'admin')}")
        assert r.status_code == 200 and 'src="/static/admin.js"' in r.text
        assert r.headers["cache-control"] == "no-store"
    # Nothing was started by the refused requests.
    assert await server.runtime.redis.get(server.runtime.keys.reconcile_result()) is None


async def test_status_shows_live_rooms_viewers_processes_and_the_ledger_lag(
    server: RunningServer, issuer: TokenIssuer,
) -> None:
    rt, admin = server.runtime, issuer.mint("ops", "admin")
    await setup_room(rt, "hall")
    viewers = [await open_client(server.ws_url, issuer.mint(f"v{i}", "viewer")) for i in range(3)]
    try:
        await asyncio.gather(*(c.join("hall") for c in viewers))
        before = await _status(server, admin)
        assert [(r["room"], r["creator"], r["viewers"]) for r in before["rooms"]] == [
            ("hall", "creator1", 3)]
        [me] = before["processes"]
        assert (me["connections"], me["rooms"], me["worker"]) == (3, 1, None)
        assert before["totals"]["connections"] == 3
        assert len(before["ledger"]) == rt.config.wallet_shards
        await grant(rt, "v0", 50)  # one ledger entry, and no flusher to take it
        after = await _status(server, admin)
        assert after["ledger_lag"] == before["ledger_lag"] + 1
        shard = rt.keys.shard_of("v0")
        assert after["ledger"][shard]["entries"] == before["ledger"][shard]["entries"] + 1
    finally:
        await asyncio.gather(*(c.close() for c in viewers))


async def test_reconcile_runs_once_and_every_process_reads_its_result(
    server: RunningServer, issuer: TokenIssuer,
) -> None:
    rt, admin = server.runtime, issuer.mint("ops", "admin")
    await grant(rt, "ann", 70)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        r = await http.post("/api/admin/reconcile", headers=_bearer(admin))
        assert r.status_code == 202 and r.json()["started"] is True
        assert r.json()["reconcile"]["status"] == "running"
        again = await http.post("/api/admin/reconcile", headers=_bearer(admin))
        assert again.json()["started"] is False  # one run at a time
        await _reconciled(rt)
        result = (await _status(server, admin))["reconcile"]
        assert (result["status"], result["differences"], result["by"]) == ("agree", 0, "ops")
        assert (await _status(server, admin))["ledger_lag"] == 0  # it drained the streams
        # A wallet that disagrees with the ledger is named.
        await rt.redis.hset(rt.keys.wallet("ann"), "coins", 71)
        r = await http.post("/api/admin/reconcile", headers=_bearer(admin))
        assert r.json()["started"] is True
        await _reconciled(rt)
    result = (await _status(server, admin))["reconcile"]
    assert result["status"] == "differ"
    assert result["shown"] == ["ann: coins: redis=71 ledger=70"]


async def test_a_stopped_process_leaves_the_view(config: Config, redis: Redis,
                                                 pool: asyncpg.Pool) -> None:
    async with inprocess_server(config) as one:
        rt = one.runtime
        name = rt.components["heartbeat"].name
        await rt.components["heartbeat"].beat()
        assert await redis.exists(rt.keys.process(name))
    assert not await redis.exists(rt.keys.process(name))
    assert await redis.zscore(rt.keys.processes(), name) is None


def test_room_rate_is_over_the_window_or_over_the_span_of_a_capped_read() -> None:
    from server.web.admin.status import RATE_WINDOW_S, _rate

    now = 1_000_000_000
    entries = [(f"{now - 4000 + i}-0".encode(), {}) for i in range(30)]
    assert _rate([], now, 1000) == 0.0
    assert _rate(entries, now, 1000) == round(30 / RATE_WINDOW_S, 1)
    # Read capped at 30 entries spanning the last 4 s: 30 events in 4 s, not in the window.
    assert _rate(entries, now, 30) == 7.5


async def test_http_refusals_count_in_the_rate_limit_and_error_numbers(
    config: Config, issuer: TokenIssuer,
) -> None:
    """A gift over HTTP past the user's budget is a 429 `rate_limited` problem: the operator view
    counts it beside the WebSocket refusals, and every other problem response as an error."""
    async with inprocess_server(dataclasses.replace(config, rate_per_s=0.001, rate_burst=1)
                                ) as server:
        rt, admin = server.runtime, issuer.mint("ops", "admin")
        await setup_room(rt, "hall")
        await grant(rt, "v0", 100)
        before = (await _status(server, admin))["processes"][0]
        gift = {"room": "hall", "gift": "rose", "count": 1}
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            viewer = _bearer(issuer.mint("v0", "viewer"))
            first = await http.post("/api/gifts", headers=viewer, json={**gift, "tx": "t1"})
            assert first.status_code == 200, first.text
            second = await http.post("/api/gifts", headers=viewer, json={**gift, "tx": "t2"})
            assert (second.status_code, second.json()["code"]) == (429, "rate_limited")
            unauth = await http.get("/api/me/balance")
            assert unauth.status_code == 401
        after = (await _status(server, admin))["processes"][0]
        assert after["rate_limited"] == before["rate_limited"] + 1
        assert after["errors"] == before["errors"] + 2
        assert after["http_problems_by_code"] == {"rate_limited": 1, "unauthorized": 1}


async def test_refusals_answered_by_the_socket_edge_count_too(config: Config) -> None:
    """The gate answers some refusals before the app sees the request (the per-address HTTP
    rate's 429, a declared body over the limit's 413): the view counts them with the app's."""
    cfg = dataclasses.replace(config, trusted_addresses="", http_rate_per_s=0.001, http_burst=2)
    async with inprocess_server(cfg) as server:
        rt = server.runtime
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            big = await http.post("/api/gifts", content=b"x" * (cfg.http_max_body_bytes + 1))
            assert (big.status_code, big.json()["code"]) == (413, "frame_too_large")
            for _ in range(2):  # the address's burst
                assert (await http.get("/healthz")).status_code == 200
            limited = await http.get("/healthz")
            assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
        # In process: the view's own HTTP route is behind the same exhausted rate.
        await rt.components["heartbeat"].beat()
        [me] = (await deployment_status(rt))["processes"]
        assert me["http_problems_by_code"] == {"frame_too_large": 1, "rate_limited": 1}
        assert (me["rate_limited"], me["errors"]) == (1, 2)


async def _closed_by_the_edge(server: RunningServer, message: bytes, *, text: bool) -> int:
    """The close code the server answers `message` with (sent as a text or binary frame)."""
    async with connect(server.ws_url, subprotocols=[SUBPROTOCOL_JSON]) as ws:
        await ws.send(message, text=text)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code is not None
    return ws.close_code


async def test_websockets_the_edge_closes_for_a_broken_limit_count_as_errors(
    server: RunningServer, issuer: TokenIssuer,
) -> None:
    """Invalid UTF-8 (1007) and a message over the size limit (1009) are closed by the socket
    edge, with no error frame and no problem response: the view counts them per close code, in
    the process's errors and in the totals."""
    admin = issuer.mint("ops", "admin")
    before = await _status(server, admin)
    assert await _closed_by_the_edge(server, b'{"type":"\xff"}', text=True) == 1007
    too_big = b"x" * (server.runtime.config.ws_max_message_bytes + 1)
    assert await _closed_by_the_edge(server, too_big, text=False) == 1009
    after = await _status(server, admin)
    [me] = after["processes"]
    assert me["edge_closes_by_code"] == {"1007": 1, "1009": 1}
    assert me["errors"] == before["processes"][0]["errors"] + 2
    assert after["totals"]["errors"] == before["totals"]["errors"] + 2
    # Neither is an error frame, an HTTP problem or a rate limit.
    assert (me["errors_by_code"], me["http_problems_by_code"]) == ({}, {})
    assert me["rate_limited"] == 0
