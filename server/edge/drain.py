"""The real-time component's lifecycle: start it (broker, hub, writers' clock) and drain it.

Drain (SIGTERM -> server.serve.DrainingServer -> `app.state.drain`): the process marks itself
draining (readyz answers 503 and `/ws` refuses new sockets), tells every client `going_away`
{reason, reconnect_ms}, lets each writer flush what it holds, closes with 1001, and waits for the
sessions to end, all within `drain_timeout_s`. Gifts in flight finish first: a session's receive
loop only notices the close after its current request (spend and publish) completed, so an
accepted spend is acknowledged or, at worst, retried by the client with the same tx.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.edge.writer import FlushScheduler
from server.hub.broker_redis import RedisBroker
from server.hub.combos import ComboSweeper, Gifts
from server.hub.hub import Hub, HubSettings
from server.hub.roomstate import RoomState

if TYPE_CHECKING:
    from server.edge.connection import Connection
    from server.runtime import Runtime

log = logging.getLogger("giftwire.drain")


@dataclass
class Realtime:
    hub: Hub
    broker: RedisBroker
    state: RoomState
    scheduler: FlushScheduler
    gifts: Gifts
    connections: set[Connection] = field(default_factory=set)
    # Bounds concurrent token checks (one Redis round trip each) so a reconnect storm queues
    # here instead of exhausting the Redis connection pool.
    auth_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(16))

    async def on_room_change(self, info: Any) -> None:
        """streams.go_live / end_stream hook: tell every process's members (`room` update)."""
        await self.state.announce_status(info.room, bool(info.live))


async def start_realtime(rt: Runtime, stack: contextlib.AsyncExitStack) -> Realtime:
    cfg = rt.config
    assert cfg.redis_url is not None
    runner = rt.components.get("scripts")
    if runner is None:
        from server.storage.scripts import ScriptRunner

        runner = ScriptRunner(rt.redis)
        await runner.load()
        runner.start()
        stack.push_async_callback(runner.stop)
        rt.components["scripts"] = runner
    state = RoomState(
        rt.keys, runner, rt.redis,
        history_maxlen=cfg.history_maxlen, history_max_age_s=cfg.history_max_age_s,
        combo_timeout_ms=cfg.combo_timeout_ms, presence_ttl_s=cfg.presence_ttl_s,
    )
    ping_s = float(cfg.extra.get("pubsub_ping_s", max(0.5, cfg.heartbeat_s / 4)))
    # CLIENT SETNAME refuses spaces: keep the name to a safe alphabet whatever the prefix.
    tag = re.sub(r"[^A-Za-z0-9:._-]", "_", cfg.key_prefix)
    broker = RedisBroker(cfg.redis_url, rt.redis, name=f"giftwire-pubsub-{tag}",
                         ping_interval_s=ping_s)
    await broker.start()
    stack.push_async_callback(broker.stop)
    sweeper = ComboSweeper(state)
    settings = HubSettings(
        tick_s=min(0.25, cfg.combo_timeout_ms / 4000),
        presence_refresh_s=max(1.0, cfg.presence_ttl_s / 3),
        max_replay=cfg.history_maxlen,
    )
    hub = Hub(broker, state, rt.metrics, sweeper, settings)
    await hub.start()
    stack.push_async_callback(hub.stop)
    scheduler = FlushScheduler(cfg.writer_window_ms / 1000)
    stack.callback(scheduler.cancel)
    realtime = Realtime(hub, broker, state, scheduler, Gifts(rt, state, sweeper))
    rt.components["realtime"] = realtime
    from server.edge.connection import watch_sessions  # connection imports this module

    watcher = asyncio.create_task(
        watch_sessions(realtime, cfg.hello_timeout_s, cfg.idle_timeout_s), name="ws-timeouts"
    )

    async def stop_watcher() -> None:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

    stack.push_async_callback(stop_watcher)
    return realtime


def drain_callable(rt: Runtime) -> Callable[[], Awaitable[None]]:
    """What `app.state.drain` holds: DrainingServer awaits it on SIGTERM."""

    async def drain() -> None:
        await drain_connections(rt, rt.components.get("realtime"))

    return drain


async def drain_connections(rt: Runtime, realtime: Any, reason: str = "server draining") -> None:
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
