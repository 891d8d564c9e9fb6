"""Draining the real-time component on SIGTERM (it starts in server/edge/realtime.py).

Drain (SIGTERM -> server.serve.DrainingServer -> `app.state.drain`): the process marks itself
draining (readyz answers 503 and `/ws` refuses new sockets), tells every client `going_away`
{reason, reconnect_ms}, lets each writer flush what it holds, closes with 1001, and waits for the
sessions to end, all within `drain_timeout_s`. Gifts in flight finish first: a session's receive
loop only notices the close after its current request (spend and publish) completed, so an
accepted spend is acknowledged or, at worst, retried by the client with the same tx.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from server.edge.realtime import Realtime
from server.runtime import Runtime

log = logging.getLogger("giftwire.drain")


def drain_callable(rt: Runtime) -> Callable[[], Awaitable[None]]:
    """What `app.state.drain` holds: DrainingServer awaits it on SIGTERM."""

    async def drain() -> None:
        await drain_connections(rt, rt.components.get("realtime"))

    return drain


async def drain_connections(rt: Runtime, realtime: Realtime | None,
                            reason: str = "server draining") -> None:
    rt.draining = True
    if realtime is None:
        return
    cfg = rt.config
    conns = list(realtime.connections)
    log.info("draining %d connection(s)", len(conns))
    budget = max(0.1, cfg.drain_timeout_s - 0.5)
    flush_s = budget / 2
    await asyncio.gather(
        *(c.going_away(reason, cfg.reconnect_hint_ms, flush_s) for c in conns),
        return_exceptions=True,
    )
