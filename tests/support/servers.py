"""Real servers for tests: Redis and Postgres (machine or embedded), and giftwire itself.

In-process uvicorn for most end-to-end tests; real subprocesses (`python -m server serve`) where
a test needs several server processes, signals, or a kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from server.config import Config
from server.runtime import Runtime
from server.serve import DrainingServer, uvicorn_config
from server.storage.embedded import free_port


@dataclass
class RunningServer:
    config: Config
    base_url: str
    app: Any = None  # the Starlette app, for in-process servers
    server: uvicorn.Server | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws"

    @property
    def runtime(self) -> Runtime:
        assert self.app is not None, "only in-process servers expose their runtime"
        return self.app.state.runtime  # type: ignore[no-any-return]


class _InProcessServer(DrainingServer):
    """Leaves signals to pytest: tests trigger a drain by calling `handle_exit` themselves."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def inprocess_server(config: Config) -> AsyncIterator[RunningServer]:
    """A real uvicorn server on a free port, in this event loop."""
    config = _with_port(config)
    uv_config = uvicorn_config(config)
    server = _InProcessServer(uv_config, config.drain_timeout_s)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)  # polling uvicorn's own flag: it offers no event
        yield RunningServer(
            config, f"http://127.0.0.1:{config.port}", app=uv_config.app, server=server
        )
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


def _with_port(config: Config) -> Config:
    import dataclasses

    return dataclasses.replace(config, host="127.0.0.1", port=free_port())


@contextlib.asynccontextmanager
async def subprocess_server(
    config: Config, *, extra_env: dict[str, str] | None = None
) -> AsyncIterator[RunningServer]:
    """`python -m server serve` in a child process; waits for /readyz."""
    config = _with_port(config)
    env = {**os.environ, **config.to_env(), **(extra_env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    running = RunningServer(config, f"http://127.0.0.1:{config.port}", process=proc)
    try:
        await wait_ready(running.base_url, proc)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if proc.returncode else signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if proc.stderr:
            proc.stderr.close()


async def wait_ready(base_url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"server exited with {proc.returncode}:\n{err[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(base_url + "/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)  # polling a child process's readiness endpoint
    raise TimeoutError(f"{base_url} not ready after {timeout}s")
