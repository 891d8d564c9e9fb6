"""The real-time component: the broker, the hub, the writers' flush clock, the gift path and the
open sessions, started together (and stopped in reverse by the app's exit stack).

Draining it on SIGTERM is server/edge/drain.py; one WebSocket session is server/edge/connection.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol import CloseCode, ErrorCode
from server.auth import Principal
from server.edge.gifts import Gifts
from server.edge.moderated import RoomGuard
from server.edge.overlays import OverlayDesk
from server.edge.revocations import Revocations
from server.edge.writer import FlushScheduler
from server.hub.broker import Broker
from server.hub.brokers import open_broker
from server.hub.combos import ComboSweeper
from server.hub.hub import Hub, HubSettings
from server.hub.roomstate import RoomState
from server.live import creator_earnings
from server.live.battle_settle import Settler
from server.live.battles import Battles
from server.live.moderation import Moderation
from server.live.overlay_keys import OverlayKeys
from server.live.overlay_settings import OverlaySettingsStore
from server.live.user_pushes import UserPushes
from server.money.blockgate import BlockGate
from server.runtime import Runtime, log_failure
from server.storage.runners import script_runner

log = logging.getLogger("giftwire.realtime")


class Session(Protocol):
    """What the component needs of an open WebSocket session (server/edge/connection.py)."""

    principal: Principal | None
    close_code: int | None
    opened: float  # time.monotonic() of the accept
    last_rx: float  # time.monotonic() of the last frame received

    def kill(self, code: int, reason: str) -> None: ...

    def token_ended(self, code: ErrorCode, message: str) -> None: ...

    async def going_away(self, reason: str, reconnect_ms: int, flush_s: float) -> None: ...


@dataclass
class Realtime:
    hub: Hub
    broker: Broker  # RedisBroker, or ShardedBroker on a cluster
    state: RoomState
    scheduler: FlushScheduler
    gifts: Gifts
    guard: RoomGuard  # joins of blocked users refused, blocked sessions taken out of the room
    pushes: UserPushes  # `balance` messages to every session of a user (server/live/)
    overlays: OverlayDesk  # settings pushed to overlay sessions, rotated keys ending them
    overlay_keys: OverlayKeys
    revocations: Revocations  # revoked tokens' sessions ended on every process at once
    connections: set[Session] = field(default_factory=set)
    # Bounds concurrent token checks (one Redis round trip each) so a reconnect storm queues
    # here instead of exhausting the Redis connection pool.
    auth_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(16))

    # Records each stream for the dashboard's earnings (server/live/creator_earnings.py), in
    # background tasks (`stream_records`, awaited by tests).
    on_stream: Callable[[Any], Awaitable[None]] | None = None
    stream_records: set[asyncio.Task[None]] = field(default_factory=set)

    async def on_room_change(self, info: Any) -> None:
        """streams.go_live / end_stream hook: tell every process's members (`room` update)."""
        await self.state.announce_status(info.room, bool(info.live))
        if self.on_stream is not None:
            await self.on_stream(info)


async def start_realtime(rt: Runtime, stack: contextlib.AsyncExitStack) -> Realtime:
    cfg = rt.config
    assert cfg.redis_url is not None
    runner = rt.components.get("scripts")
    if runner is None:
        runner = script_runner(rt.redis)
        await runner.load()
        runner.start()
        stack.push_async_callback(runner.stop)
        rt.components["scripts"] = runner
    state = RoomState(
        rt.keys, runner, rt.redis,
        history_maxlen=cfg.history_maxlen, history_max_age_s=cfg.history_max_age_s,
        combo_timeout_ms=cfg.combo_timeout_ms, presence_ttl_s=cfg.presence_ttl_s,
    )
    broker = open_broker(rt, "pubsub")
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
    wallet = rt.components.get("wallet")
    moderation = Moderation(rt, wallet.blocks if wallet is not None else BlockGate(rt, runner))
    rt.components["moderation"] = moderation
    connections: set[Session] = set()
    guard = RoomGuard(hub, moderation, connections)
    guard.install()
    pushes = await UserPushes.start(rt, stack)
    overlays = OverlayDesk(OverlaySettingsStore(rt), connections)
    overlays.install(hub)

    revocations = Revocations(rt.issuer, rt.redis, rt.keys.revocation_channel(), connections)
    await revocations.start(pushes)  # on the balance pushes' pub/sub connection
    stack.callback(revocations.stop)
    realtime = Realtime(hub, broker, state, scheduler, Gifts(rt, state, sweeper, pushes), guard,
                        pushes, overlays, OverlayKeys(rt), revocations, connections)
    rt.components["realtime"] = realtime

    async def record(info: Any) -> None:
        try:
            await creator_earnings.record(rt, info.room, info.creator, bool(info.live),
                                          info.started_at, info.ended_at)
        except Exception as exc:
            log_failure(log, f"recording the stream of {info.room}", exc)

    async def on_stream(info: Any) -> None:
        # In the background: going live must not wait on Postgres (the ledger waits in Redis
        # meanwhile); a stream not recorded only misses its row in the earnings per stream.
        task = asyncio.get_running_loop().create_task(record(info))
        realtime.stream_records.add(task)
        task.add_done_callback(realtime.stream_records.discard)

    realtime.on_stream = on_stream
    await start_battles(rt, hub, state, stack)

    watcher = asyncio.create_task(
        watch_sessions(realtime, cfg.hello_timeout_s, cfg.idle_timeout_s,
                       token_check_s=cfg.heartbeat_s / 2),
        name="ws-timeouts",
    )

    async def stop_watcher() -> None:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

    stack.push_async_callback(stop_watcher)
    return realtime


async def start_battles(rt: Runtime, hub: Hub, state: RoomState,
                        stack: contextlib.AsyncExitStack) -> Battles:
    """Gift battles: the domain, and settling due ones on a touch and on a periodic sweep."""
    battles = Battles(rt, hub.battles)
    settler = Settler(battles)
    state.on_battle_due = settler.touch
    rt.components["battles"] = battles
    rt.components["battle_settler"] = settler
    settler.start()
    stack.push_async_callback(settler.stop)
    return battles


async def watch_sessions(realtime: Realtime, hello_timeout_s: float, idle_timeout_s: float,
                         token_check_s: float = 0.0) -> None:
    """One task for every session's timers: no `hello` in time (4011), nothing received for
    `idle_timeout_s` (4010), its token expired (at once): error, then 4004. Revocations end
    sessions when announced (server/edge/revocations.py); every `token_check_s` all open
    sessions are checked against Redis too (one pipelined call), for an announcement pub/sub
    lost. Cheaper than a timer per connection per receive."""
    period = max(0.05, min(1.0, hello_timeout_s / 4, idle_timeout_s / 4))
    next_token_check = time.monotonic() + token_check_s
    while True:
        await asyncio.sleep(period)  # the sweep period
        now, wall = time.monotonic(), time.time()
        for conn in list(realtime.connections):
            if conn.close_code is not None:
                continue
            principal = conn.principal
            if principal is None:
                if now - conn.opened > hello_timeout_s:
                    conn.kill(CloseCode.HELLO_TIMEOUT, "no hello in time")
            elif now - conn.last_rx > idle_timeout_s:
                conn.kill(CloseCode.IDLE_TIMEOUT, "idle timeout")
            elif wall >= principal.expires_at:
                conn.token_ended(ErrorCode.TOKEN_EXPIRED, "the token has expired")
        if token_check_s > 0 and now >= next_token_check:
            next_token_check = now + token_check_s
            await realtime.revocations.check()

