"""Liveness and readiness probes, and the answer of an HTTP request that needed Postgres while it
was down.

Readiness follows the spend path: Redis (every spend, every event) must answer; Postgres only
receives the ledger afterwards (the flusher catches up from the Redis streams), so Postgres down
or its migrations pending make the server `degraded`, still 200, with the reason in the body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.runtime import Runtime
from server.storage import db
from server.web.problem import problem

log = logging.getLogger("giftwire.health")

PROBE_TIMEOUT_S = 2.0
# Required for readiness; the other checks only degrade it.
REQUIRED = frozenset({"redis"})
# What a request that needed Postgres while it was down is told: a load balancer's retry soon
# lands after the flusher's and the migrator's capped backoff (5 s).
POSTGRES_RETRY_AFTER_S = 5


async def healthz(request: Request) -> Response:
    """The process is alive and its event loop answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 `ready` (all ok) or `degraded` (Postgres down or migrations pending: spends work, the
    ledger waits in Redis); 503 `not_ready` when Redis fails or while draining."""
    rt: Runtime = request.app.state.runtime
    checks: dict[str, str] = {}

    async def check(name: str, probe: Awaitable[Any]) -> None:
        try:
            ok = await asyncio.wait_for(probe, timeout=PROBE_TIMEOUT_S)
            checks[name] = "ok" if ok else "failing"
        except Exception as exc:
            checks[name] = f"failing: {type(exc).__name__}"

    await asyncio.gather(
        check("redis", rt.redis.ping()),
        check("postgres", rt.pool.fetchval("SELECT true")),
        check("migrations", db.migrations_current(rt.pool)),
    )
    failing = sorted(k for k, v in checks.items() if v != "ok")
    body: dict[str, Any] = {"checks": checks, "degraded": [k for k in failing
                                                           if k not in REQUIRED]}
    flusher = rt.components.get("flusher")
    if flusher is not None:
        body["ledger_lag"] = {"entries": flusher.lag_entries, "seconds": round(flusher.lag_s, 1)}
    if rt.draining:
        checks["draining"] = "yes"
    if rt.draining or REQUIRED.intersection(failing):
        body["status"] = "not_ready"
        return JSONResponse(body, status_code=503)
    body["status"] = "degraded" if failing else "ready"
    return JSONResponse(body)


async def postgres_unavailable(request: Request, exc: Exception) -> Response:
    """A request that needed Postgres (history, reversal, receipt lookup, settings) while it is
    down, or before its migrations: 503 `unavailable` with Retry-After; nothing was changed."""
    log.warning("%s %s: postgres unavailable: %s: %s", request.method, request.url.path,
                type(exc).__name__, exc)
    refused = problem(503, "unavailable", "the ledger database is unavailable; retry later")
    refused.headers["Retry-After"] = str(POSTGRES_RETRY_AFTER_S)
    return refused
