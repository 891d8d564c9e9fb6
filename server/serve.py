"""Running the server: embedded services when no URLs are set, uvicorn, and a graceful drain.

On SIGTERM/SIGINT the server stops accepting connections, marks itself not ready, lets the app's
drain hook tell every client to reconnect elsewhere (going_away, then close 1001) within
`drain_timeout_s`, and only then lets uvicorn finish. A second signal forces the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from functools import partial
from types import FrameType

import uvicorn

from server.app import create_app
from server.config import Config
from server.edge.transport.gate import edge_protocols
from server.storage.embedded import embedded_services
from server.web.problem_count import count_refusal, count_violation

log = logging.getLogger("giftwire.serve")


@contextlib.contextmanager
def resolved(config: Config) -> Iterator[Config]:
    """Yield the config with both URLs set, starting embedded servers for the missing ones."""
    if not config.embedded:
        yield config
        return
    with embedded_services(
        config.data_dir,
        redis=config.redis_url is None,
        postgres=config.database_url is None,
    ) as (redis_url, database_url):
        yield dataclasses.replace(
            config,
            redis_url=config.redis_url or redis_url,
            database_url=config.database_url or database_url,
        )


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_timeout_s: float) -> None:
        super().__init__(config)
        self._drain_timeout_s = drain_timeout_s
        self._drain_task: asyncio.Future[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the captured signal after shutdown, which would kill the process
        # before the embedded Redis/Postgres are stopped; a drained server simply returns.
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or not self.started:
            super().handle_exit(sig, frame)  # second signal, or not serving yet: stop now
            return
        loop = asyncio.get_event_loop()
        # Signal handlers run between bytecodes; call_soon_threadsafe also wakes a sleeping loop.
        self._drain_task = loop.create_future()
        loop.call_soon_threadsafe(self._start_drain, sig, frame)

    def _start_drain(self, sig: int, frame: FrameType | None) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit(sig, frame))

    async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        for server in self.servers:
            server.close()  # no new connections
        app = self.config.loaded_app
        drain = getattr(_find_starlette(app).state, "drain", None) if app else None
        if drain is not None:
            try:
                await asyncio.wait_for(drain(), timeout=self._drain_timeout_s)
            except TimeoutError:
                log.warning("drain did not finish in %.1fs", self._drain_timeout_s)
            except Exception:
                log.exception("drain failed")
        super().handle_exit(sig, frame)


def _find_starlette(app: object) -> object:
    # uvicorn wraps the app in middleware (proxy headers, message logger); unwrap to ours.
    while hasattr(app, "app") and not hasattr(app, "state"):
        app = app.app
    return app


def uvicorn_config(config: Config) -> uvicorn.Config:
    # giftwire's own protocols through uvicorn's supported `http=`/`ws=` class options: the gate
    # bounds every connection before it is trusted, the WebSocket protocol every frame
    # (server/edge/transport/).
    app = create_app(config)
    gate, websocket = edge_protocols(config, on_refused=partial(count_refusal, app),
                                     on_violation=partial(count_violation, app))
    app.state.admission = gate.admission  # the API charges a malformed body (web/body.py)
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=gate,
        ws=websocket,
        ws_ping_interval=config.ws_ping_interval_s,
        ws_ping_timeout=config.ws_ping_timeout_s,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(config.drain_timeout_s) + 5,
    )


def serve(config: Config) -> None:
    with resolved(config) as full:
        server = DrainingServer(uvicorn_config(full), full.drain_timeout_s)
        server.run()
