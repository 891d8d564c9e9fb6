"""The Starlette application: routes, and a lifespan that builds the runtime and its components."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.config import Config
from server.runtime import Runtime, open_runtime
from server.web.body import BodyLimit
from server.web.failures import exception_handlers
from server.web.health import healthz, readyz
from server.web.problem_count import ProblemCounter

log = logging.getLogger("giftwire.app")


async def _metrics(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    return await rt.metrics.endpoint(request)


def create_app(config: Config) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(config) as rt:
            app.state.runtime = rt
            async with contextlib.AsyncExitStack() as stack:
                await _start_components(rt, stack)
                app.state.drain = rt.components.get("drain")  # awaited by serve.DrainingServer
                log.info("giftwire ready on %s:%s", config.host, config.port)
                yield
            log.info("giftwire stopped")

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", _metrics),
    ]
    routes += _component_routes(config)
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        # Every request body is bounded before a route runs (server/web/body.py).
        middleware=[Middleware(ProblemCounter),
                    Middleware(BodyLimit, max_bytes=config.http_max_body_bytes)],
        exception_handlers=dict(exception_handlers()),
    )


async def _start_components(rt: Runtime, stack: contextlib.AsyncExitStack) -> None:
    """Start the wallet, flusher and hub; the stack stops them in reverse order."""
    # -- Lua script runner (shared by wallet and hub) and the wallet + ledger flusher --
    from typing import Any

    from server.money import startup as money
    from server.storage.runners import script_runner

    lua_seconds: dict[str, Any] = {}  # script -> its labelled histogram (labels() is not free)

    def on_latency(name: str, seconds: float) -> None:
        if (h := lua_seconds.get(name)) is None:
            h = lua_seconds[name] = rt.metrics.lua_seconds.labels(script=name)
        h.observe(seconds)

    runner = script_runner(rt.redis, on_latency=on_latency)
    await runner.load()
    runner.start()
    stack.push_async_callback(runner.stop)
    rt.components["scripts"] = runner
    await money.start(rt, runner, stack)
    # -- real-time hub: broker, rooms, fan-out; `/ws` sessions; drain on SIGTERM --
    from server.edge import drain
    from server.edge.realtime import start_realtime

    realtime = await start_realtime(rt, stack)
    rt.components["drain"] = drain.drain_callable(rt)
    rt.components["on_room_change"] = realtime.on_room_change
    # -- operator view: this process's heartbeat into Redis (server/web/admin/) --
    from server.web import admin

    await admin.start(rt, stack)
    # -- demo (`make run`): a live room and gift bots; keep it last, it uses everything above --
    if rt.config.demo:
        from server.web import demo

        await demo.start(rt, stack)


def _component_routes(config: Config) -> list[BaseRoute]:
    """HTTP API and WebSocket routes of the components."""
    found: list[BaseRoute] = []
    # -- wallet, ledger and room lifecycle HTTP API --
    from server.web import api

    found += api.routes(config)
    from server.web import moderation  # blocks, moderators, audit of a room

    found += moderation.routes(config)
    from server.web import creator  # the creator dashboard and its API

    found += creator.routes(config)
    from server.web import battles  # gift battles between two rooms

    found += battles.routes(config)
    # -- pages (overlay, demo, static files) --
    from server.web import pages

    found += pages.routes(config)
    # -- operator view (`/admin` and its JSON) --
    from server.web import admin

    found += admin.routes()
    # -- real-time hub: the WebSocket endpoint and the room goal --
    from starlette.routing import WebSocketRoute

    from server.edge.endpoint import ws_endpoint
    from server.web.goal import post_goal

    found += [
        WebSocketRoute("/ws", ws_endpoint),
        Route("/api/rooms/{room}/goal", post_goal, methods=["POST"]),
    ]
    return found
