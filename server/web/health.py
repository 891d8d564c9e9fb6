"""Liveness and readiness probes.

Readiness follows the spend path: Redis (every spend, every event) must answer; Postgres only
receives the ledger afterwards (the flusher catches up from the Redis streams), so Postgres down
or its migrations pending make the server `degraded`, still 200, with the reason in the body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.runtime import Runtime, process_name, worker_index
from server.storage import db

PROBE_TIMEOUT_S = 2.0
# Required for readiness; the other checks only degrade it.
REQUIRED = frozenset({"redis"})


async def healthz(request: Request) -> Response:
    """The process is alive and its event loop answers; which process (and worker slot, under
    `--workers`) answered, since several may share the port."""
    return JSONResponse({"status": "ok", "process": process_name(), "worker": worker_index()})


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

