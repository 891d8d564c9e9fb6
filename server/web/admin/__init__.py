"""The operator view (`/admin`): live rooms, processes, ledger lag, errors, reconcile.

Built from Redis and from each server process's heartbeat (heartbeat.py), so any process of any
server answers for the whole deployment. `routes` and `start` are what server/app.py registers.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.routing import BaseRoute

from server.runtime import Runtime


def routes() -> list[BaseRoute]:
    from server.web.admin.views import routes as view_routes

    return view_routes()


async def start(rt: Runtime, stack: contextlib.AsyncExitStack) -> None:
    """Start this process's heartbeat; on the way out stop it and any reconcile it runs."""
    from server.web.admin.heartbeat import Heartbeat

    heartbeat = Heartbeat(rt)
    await heartbeat.start()
    stack.push_async_callback(heartbeat.stop)
    rt.components["heartbeat"] = heartbeat

    async def cancel_reconciles() -> None:
        tasks = list(rt.components.get("admin_reconciles", ()))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    stack.push_async_callback(cancel_reconciles)
