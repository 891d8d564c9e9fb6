"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.runtime import Runtime
from server.storage import db


async def healthz(request: Request) -> Response:
    """The process is alive and its event loop answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Redis and Postgres answer and migrations are applied; 503 while draining."""
    rt: Runtime = request.app.state.runtime
    checks: dict[str, str] = {}

    async def check(name: str, probe: Awaitable[Any]) -> None:
        try:
            ok = await asyncio.wait_for(probe, timeout=2.0)
            checks[name] = "ok" if ok else "failing"
        except Exception as exc:
            checks[name] = f"failing: {type(exc).__name__}"

    await asyncio.gather(
        check("redis", rt.redis.ping()),
        check("postgres", rt.pool.fetchval("SELECT true")),
        check("migrations", db.migrations_current(rt.pool)),
    )
    if rt.draining:
        checks["draining"] = "yes"
    ready = not rt.draining and all(v == "ok" for k, v in checks.items() if k != "draining")
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
