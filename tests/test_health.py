import asyncio

import asyncpg
import httpx

from server.config import Config
from server.storage import db
from tests.support.servers import RunningServer


async def test_healthz_and_readyz_answer_on_a_real_server(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
    assert health.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"redis": "ok", "postgres": "ok", "migrations": "ok"}


async def test_readyz_is_503_while_draining(server: RunningServer) -> None:
    server.runtime.draining = True
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["draining"] == "yes"


async def test_unknown_path_is_a_problem_document(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        r = await client.get("/no-such-thing")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"


async def test_metrics_are_prometheus_text(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        r = await client.get("/metrics")
    assert r.status_code == 200
    assert "giftwire_connections" in r.text


async def test_migrations_apply_twice_safely(config: Config, pool: asyncpg.Pool) -> None:
    # The pool fixture applied them once already; concurrent re-runs must all be no-ops.
    again = await asyncio.gather(
        *(db.migrate(config.database_url or "", config.db_schema) for _ in range(3))
    )
    assert again == [[], [], []]
    assert await db.migrations_current(pool)
